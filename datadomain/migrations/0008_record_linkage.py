import django.db.models.deletion
from django.db import migrations, models


def link_existing_patients(apps, schema_editor):
    """Every stored Patient is the first source of its subject."""
    Patient = apps.get_model("datadomain", "Patient")
    PatientSource = apps.get_model("datadomain", "PatientSource")
    batch = []
    for row in Patient.objects.values(
        "pk", "resource_id", "name", "birth_date", "sex", "version_id", "last_updated", "ingest_batch"
    ).iterator(chunk_size=5000):
        pk, resource_id = row.pop("pk"), row.pop("resource_id")
        batch.append(PatientSource(resource_id=resource_id, patient_id=pk, **row))
        if len(batch) >= 5000:
            PatientSource.objects.bulk_create(batch)
            batch = []
    PatientSource.objects.bulk_create(batch)


class Migration(migrations.Migration):
    dependencies = [
        ("datadomain", "0007_resident_contact_codes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="condition",
            name="code",
            field=models.CharField(max_length=120, verbose_name="code"),
        ),
        migrations.CreateModel(
            name="PatientSource",
            fields=[
                ("resource_id", models.CharField(max_length=64, primary_key=True, serialize=False, verbose_name="FHIR resource id")),
                ("name", models.CharField(max_length=200, verbose_name="name")),
                ("birth_date", models.DateField(verbose_name="birth date")),
                ("sex", models.CharField(choices=[("male", "male"), ("female", "female"), ("other", "other"), ("unknown", "unknown")], default="unknown", max_length=8, verbose_name="sex")),
                ("version_id", models.BigIntegerField(default=0, verbose_name="resource version")),
                ("last_updated", models.DateTimeField(verbose_name="last updated at source")),
                ("ingest_batch", models.BigIntegerField(default=0, verbose_name="ingest batch")),
                ("confirmed", models.CharField(blank=True, db_default="", max_length=64, verbose_name="confirmed demographics")),
                ("confirmed_by", models.CharField(blank=True, db_default="", max_length=150, verbose_name="confirmed by")),
                ("confirmed_at", models.DateTimeField(blank=True, null=True, verbose_name="confirmed at")),
                ("patient", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="sources", to="datadomain.patient", verbose_name="patient")),
            ],
            options={
                "verbose_name": "linked source patient",
                "verbose_name_plural": "linked source patients",
            },
        ),
        migrations.RunPython(link_existing_patients, migrations.RunPython.noop),
    ]
