"""Records stamps: has anything about a subject changed since a vector was computed?

See ``IngestBatch``: the stamp is the sum of the ``ingest_batch`` of the patient row and of every
record of the subject. Equal stamps mean the same rows in the same versions.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce

from datadomain.models import Condition, Encounter, Observation, Patient


def records_stamps(patient_ids: Sequence[int]) -> dict[int, int]:
    """Current records stamp of each known patient, in one query for the whole list."""
    parts = {
        name: Coalesce(
            Subquery(
                model.objects.filter(patient_id=OuterRef("pk"))
                .order_by()
                .values("patient_id")
                .annotate(total=Sum("ingest_batch"))
                .values("total")
            ),
            0,
        )
        for name, model in (("conditions", Condition), ("encounters", Encounter), ("observations", Observation))
    }
    rows = Patient.objects.filter(pk__in=patient_ids).annotate(**parts)
    return {
        pk: batch + conditions + encounters + observations
        for pk, batch, conditions, encounters, observations in rows.values_list("pk", "ingest_batch", *parts)
    }
