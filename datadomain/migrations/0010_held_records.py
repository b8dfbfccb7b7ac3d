import json
import re

from django.db import migrations, models

# A reference to a Patient, as datadomain.ingest.parse reads it (relative, absolute or versioned).
_PATIENT_REFERENCE = re.compile(
    r"(?:[^/]+:/(?:/[^/]+)+/)?Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?"
)


def held_subject_refs(apps, schema_editor):
    """The Patient id each open held record references, so that the next ingest re-reads those whose
    Patient is known by now."""
    QuarantinedLine = apps.get_model("datadomain", "QuarantinedLine")
    held = QuarantinedLine.objects.filter(reason_code="dangling_subject", resolved_at__isnull=True)
    for pk, raw in held.values_list("pk", "raw_line").iterator():
        try:
            reference = (json.loads(raw).get("subject") or {}).get("reference")
        except (ValueError, AttributeError):
            continue
        match = _PATIENT_REFERENCE.fullmatch(reference) if isinstance(reference, str) else None
        if match:
            QuarantinedLine.objects.filter(pk=pk).update(subject_ref=match[1])


class Migration(migrations.Migration):
    dependencies = [
        ("datadomain", "0009_source_mapping_tables"),
    ]

    operations = [
        migrations.AddField(
            model_name="quarantinedline",
            name="subject_ref",
            field=models.CharField(blank=True, db_default="", max_length=64, verbose_name="subject Patient id"),
        ),
        migrations.AddIndex(
            model_name="quarantinedline",
            index=models.Index(
                condition=models.Q(("reason_code", "dangling_subject"), ("resolved_at__isnull", True)),
                fields=["subject_ref"],
                name="dd_quarantine_held",
            ),
        ),
        migrations.RunPython(held_subject_refs, migrations.RunPython.noop),
    ]
