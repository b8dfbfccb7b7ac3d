"""Comparison grants become single-use and MAC-bound (securecompute.binding).

Grants of the old form (a budget of comparisons, no MAC key) cannot authorise a tagged query, so they
are deleted: a request still in flight at the upgrade fails after its retries and can be sent again.
"""

from django.db import migrations, models


def drop_old_grants(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("datadomain", "ComparisonGrant").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("datadomain", "0004_encrypted_vector_key_index")]

    operations = [
        migrations.RunPython(drop_old_grants, migrations.RunPython.noop),
        migrations.RemoveField(model_name="comparisongrant", name="budget"),
        migrations.RemoveField(model_name="comparisongrant", name="used"),
        migrations.AlterField(
            model_name="comparisongrant",
            name="query_sha256",
            field=models.CharField(blank=True, default="", max_length=64, verbose_name="query SHA-256"),
        ),
        migrations.AlterField(
            model_name="comparisongrant",
            name="answer",
            field=models.JSONField(blank=True, null=True, verbose_name="answer"),
        ),
        migrations.AddField(
            model_name="comparisongrant",
            name="comparisons",
            field=models.PositiveSmallIntegerField(default=0, verbose_name="comparisons"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="comparisongrant",
            name="slot_bits",
            field=models.PositiveSmallIntegerField(default=0, verbose_name="slot bits"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="comparisongrant",
            name="mac_key",
            field=models.TextField(default="", editable=False, verbose_name="MAC key (hex)"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="comparisongrant",
            name="status",
            field=models.CharField(
                choices=[("issued", "issued"), ("spent", "spent"), ("answered", "answered")],
                default="issued",
                max_length=10,
                verbose_name="status",
            ),
        ),
        migrations.AddField(
            model_name="comparisongrant",
            name="expires_at",
            field=models.DateTimeField(default="2000-01-01T00:00:00Z", verbose_name="expires"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="comparisongrant",
            name="outcome",
            field=models.CharField(blank=True, default="", max_length=32, verbose_name="outcome"),
        ),
        migrations.AddField(
            model_name="comparisongrant",
            name="spent_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="spent"),
        ),
    ]
