import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="AuditEntry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("at", models.DateTimeField(db_index=True, default=django.utils.timezone.now, verbose_name="at")),
                ("action", models.CharField(db_index=True, max_length=64, verbose_name="action")),
                ("actor", models.CharField(blank=True, db_index=True, max_length=200, verbose_name="actor")),
                ("target_type", models.CharField(blank=True, max_length=64, verbose_name="target type")),
                ("target_id", models.CharField(blank=True, db_index=True, max_length=200, verbose_name="target id")),
                ("detail", models.JSONField(blank=True, default=dict, verbose_name="detail")),
                ("chain_seq", models.BigIntegerField(blank=True, null=True, unique=True, verbose_name="chain position")),
                ("prev_hash", models.CharField(blank=True, max_length=64, null=True, verbose_name="previous hash")),
                ("hash", models.CharField(blank=True, max_length=64, null=True, verbose_name="hash")),
            ],
            options={
                "verbose_name": "audit entry",
                "verbose_name_plural": "audit entries",
                "ordering": ["-id"],
                "indexes": [
                    models.Index(
                        condition=models.Q(("chain_seq__isnull", True)), fields=["id"], name="audit_entry_pending"
                    )
                ],
            },
        ),
    ]
