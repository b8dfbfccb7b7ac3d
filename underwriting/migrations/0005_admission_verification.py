import django.db.models.deletion
from django.db import migrations, models

OLD_REASONS = {"identity_mismatch": ("mismatch", ""), "consent_invalid": ("matched", "invalid")}


def neutral_reasons(apps, schema_editor):  # type: ignore[no-untyped-def]
    """Requests refused under the old, distinguishable reasons are shown to insurers as ``not_verified``
    from now on; which check failed moves to VerificationFailure, for bureau staff."""
    UnderwritingRequest = apps.get_model("underwriting", "UnderwritingRequest")
    RequestEvent = apps.get_model("underwriting", "RequestEvent")
    VerificationFailure = apps.get_model("underwriting", "VerificationFailure")
    for reason, (identity, consent) in OLD_REASONS.items():
        refused = UnderwritingRequest.objects.filter(status="rejected", reason=reason)
        VerificationFailure.objects.bulk_create(
            [
                VerificationFailure(request_id=pk, identity=identity, consent=consent)
                for pk in refused.values_list("pk", flat=True).iterator()
            ],
            batch_size=1000,
            ignore_conflicts=True,
        )
        refused.update(reason="not_verified")
        RequestEvent.objects.filter(reason=reason).update(reason="not_verified")


def distinguishable_reasons(apps, schema_editor):  # type: ignore[no-untyped-def]
    UnderwritingRequest = apps.get_model("underwriting", "UnderwritingRequest")
    RequestEvent = apps.get_model("underwriting", "RequestEvent")
    for pk, identity in apps.get_model("underwriting", "VerificationFailure").objects.values_list(
        "request_id", "identity"
    ):
        reason = "consent_invalid" if identity == "matched" else "identity_mismatch"
        UnderwritingRequest.objects.filter(pk=pk, reason="not_verified").update(reason=reason)
        RequestEvent.objects.filter(request_id=pk, reason="not_verified").update(reason=reason)


class Migration(migrations.Migration):
    dependencies = [
        ("underwriting", "0004_custodian_misuse_flag"),
    ]

    operations = [
        migrations.CreateModel(
            name="AdmissionLock",
            fields=[
                (
                    "subject_key",
                    models.CharField(max_length=64, primary_key=True, serialize=False, verbose_name="subject key"),
                ),
                ("locked_at", models.DateTimeField(verbose_name="last locked")),
            ],
            options={
                "verbose_name": "admission lock",
                "verbose_name_plural": "admission locks",
            },
        ),
        migrations.CreateModel(
            name="VerificationFailure",
            fields=[
                (
                    "request",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="verification_failure",
                        serialize=False,
                        to="underwriting.underwritingrequest",
                    ),
                ),
                (
                    "identity",
                    models.CharField(
                        choices=[
                            ("matched", "name matches the resident ID"),
                            ("mismatch", "name does not match the resident ID"),
                            ("unknown", "resident ID unknown to the data domain"),
                        ],
                        max_length=16,
                        verbose_name="identity",
                    ),
                ),
                (
                    "consent",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("valid", "valid"),
                            ("invalid", "does not cover underwriting at the time (scope or dates)"),
                            ("withdrawn", "withdrawn"),
                            ("", "not recorded (refused before consent was checked)"),
                        ],
                        default="",
                        max_length=16,
                        verbose_name="consent",
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True, verbose_name="recorded")),
            ],
            options={
                "verbose_name": "verification failure",
                "verbose_name_plural": "verification failures",
            },
        ),
        migrations.AlterField(
            model_name="underwritingrequest",
            name="reason",
            field=models.CharField(
                blank=True,
                choices=[
                    (
                        "not_verified",
                        "identity and consent could not both be verified; check the resident ID, name and signed"
                        " consent, then submit a new request",
                    ),
                    ("rate_limited", "rate limited"),
                    ("manual_not_approved", "manual not approved"),
                    ("invalid_input", "invalid input"),
                ],
                default="",
                max_length=32,
                verbose_name="reason",
            ),
        ),
        migrations.RunPython(neutral_reasons, distinguishable_reasons),
    ]
