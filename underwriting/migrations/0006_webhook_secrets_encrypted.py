# Webhook signing secrets move from a clear column to an encrypted one (underwriting.webhook_secrets):
# existing secrets are encrypted as they are, so receivers keep verifying deliveries without a change.

from django.db import migrations, models


def encrypt_secrets(apps, schema_editor):
    from underwriting.webhook_secrets import seal

    endpoint_model = apps.get_model("underwriting", "WebhookEndpoint")
    for endpoint in endpoint_model.objects.all().iterator():
        endpoint_model.objects.filter(pk=endpoint.pk).update(secret_encrypted=seal(endpoint.secret))


def decrypt_secrets(apps, schema_editor):
    from underwriting.webhook_secrets import unseal

    endpoint_model = apps.get_model("underwriting", "WebhookEndpoint")
    for endpoint in endpoint_model.objects.all().iterator():
        endpoint_model.objects.filter(pk=endpoint.pk).update(secret=unseal(endpoint.secret_encrypted))


class Migration(migrations.Migration):

    dependencies = [
        ('underwriting', '0005_admission_verification'),
    ]

    operations = [
        migrations.AddField(
            model_name='webhookendpoint',
            name='secret_encrypted',
            field=models.TextField(default='', editable=False, verbose_name='signing secret (encrypted)'),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name='webhookendpoint',
            name='secret_rotated_at',
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name='signing secret issued'),
        ),
        migrations.AlterField(
            model_name='webhookendpoint',
            name='secret',
            field=models.CharField(blank=True, default='', max_length=100, verbose_name='signing secret'),
        ),
        migrations.RunPython(encrypt_secrets, decrypt_secrets),
        migrations.RemoveField(
            model_name='webhookendpoint',
            name='secret',
        ),
        migrations.AlterField(
            model_name='webhookdelivery',
            name='last_error',
            field=models.CharField(
                blank=True, default='', max_length=200, verbose_name='last error (bureau staff only)'
            ),
        ),
    ]
