from django.db import migrations, models


def withdrawals_from_withdrawn_consents(apps, schema_editor):  # type: ignore[no-untyped-def]
    """A consent withdrawn before withdrawals were recorded on their own becomes a withdrawal for its subject
    and insurer from the same moment, which then also stops the same form under any other reference."""
    Consent = apps.get_model("datadomain", "Consent")
    ConsentWithdrawal = apps.get_model("datadomain", "ConsentWithdrawal")
    rows = Consent.objects.filter(withdrawn_at__isnull=False).values_list("insurer_slug", "subject_key", "withdrawn_at")
    ConsentWithdrawal.objects.bulk_create(
        [
            ConsentWithdrawal(insurer_slug=insurer, subject_key=subject, withdrawn_at=moment, recorded_by="migration")
            for insurer, subject, moment in rows.iterator()
        ],
        batch_size=1000,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("datadomain", "0005_tiering_binding"),
    ]

    operations = [
        migrations.CreateModel(
            name="ConsentWithdrawal",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "insurer_slug",
                    models.CharField(
                        blank=True, help_text="empty: every insurer", max_length=63, verbose_name="insurer"
                    ),
                ),
                ("subject_key", models.CharField(max_length=64, verbose_name="subject key")),
                ("withdrawn_at", models.DateTimeField(verbose_name="withdrawn")),
                ("recorded_by", models.CharField(blank=True, max_length=150, verbose_name="recorded by")),
                ("created_at", models.DateTimeField(auto_now_add=True, verbose_name="recorded")),
            ],
            options={
                "verbose_name": "consent withdrawal",
                "verbose_name_plural": "consent withdrawals",
                "indexes": [models.Index(fields=["subject_key", "insurer_slug"], name="dd_withdrawal_subject")],
            },
        ),
        migrations.RunPython(withdrawals_from_withdrawn_consents, migrations.RunPython.noop),
    ]
