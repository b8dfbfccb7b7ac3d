"""Record linkage: a subject is one resident ID, whatever the number of hospitals' Patient ids.

The ingest links every source Patient id with the subject's resident ID (``PatientSource``) and counts
the records of every source. What it cannot decide alone is surfaced here, for bureau staff and for the
request path:

- **conflicting demographics**: a source whose name, or sex, differs from the subject's first source may
  be a different person whose hospital mistyped the resident ID. The link shows in the admin and holds
  the subject until a coder confirms it (the confirmation is a digest of the demographics confirmed, so a
  later change opens the link again);
- **records not yet linked**: records quarantined as ``dangling_subject`` that reference one of the
  subject's source Patient ids (they arrived before their Patient) hold the subject until they are
  re-read, which ingest does at the end of every run once their Patient is known
  (``ingest.runner.Ingester.release_held``).

A held subject gets no feature vector (``held``): its requests are refused, never answered on partial
or possibly foreign records. The check runs after consent verification, so it adds no existence oracle
to admission.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from datadomain.models import PatientSource, QuarantinedLine


def demographics_digest(source_name: str, source_sex: str, subject_name: str, subject_sex: str) -> str:
    text = "\x1f".join((source_name, source_sex, subject_name, subject_sex))
    return hashlib.sha256(text.encode()).hexdigest()


def differing_fields(source_name: str, source_sex: str, subject_name: str, subject_sex: str) -> list[str]:
    """Which demographics differ (names compared without spaces; an unknown sex differs from nothing)."""
    fields = []
    if "".join(source_name.split()) != "".join(subject_name.split()):
        fields.append("name")
    if source_sex != subject_sex and "unknown" not in (source_sex, subject_sex):
        fields.append("sex")
    return fields


def _other_sources(patient_ids: Iterable[int]) -> list[tuple[str, int, str, str, str, str, str]]:
    return list(
        PatientSource.objects.filter(patient_id__in=list(patient_ids))
        .exclude(resource_id=F("patient__resource_id"))
        .values_list("resource_id", "patient_id", "name", "sex", "patient__name", "patient__sex", "confirmed")
    )


def open_conflicts(patient_ids: Iterable[int]) -> set[int]:
    """Subjects with a linked source whose demographics differ and are not confirmed as they are now."""
    held: set[int] = set()
    for _, patient_id, name, sex, subject_name, subject_sex, confirmed in _other_sources(patient_ids):
        if _conflicts(name, sex, subject_name, subject_sex, confirmed):
            held.add(patient_id)
    return held


def unlinked_records(patient_ids: Iterable[int]) -> set[int]:
    """Subjects with open ``dangling_subject`` lines (held records) that reference one of their source
    Patient ids: an index lookup per 500 source ids (the partial index of open held lines)."""
    sources = dict(
        PatientSource.objects.filter(patient_id__in=list(patient_ids)).values_list("resource_id", "patient_id")
    )
    ids = sorted(sources)
    held: set[int] = set()
    for start in range(0, len(ids), 500):
        waiting = QuarantinedLine.objects.filter(
            reason_code="dangling_subject", resolved_at__isnull=True, subject_ref__in=ids[start : start + 500]
        )
        held.update(sources[reference] for reference in waiting.values_list("subject_ref", flat=True).distinct())
    return held


def held(patient_ids: Iterable[int]) -> set[int]:
    """Subjects whose records are incompletely or doubtfully linked: no vector, no answer.

    :func:`open_conflicts` and :func:`unlinked_records` together, in one query on the request path: every
    linked source of the subjects, with its subject's demographics and whether open ``dangling_subject``
    lines name it (an EXISTS through the partial index of open held lines)."""
    waiting = QuarantinedLine.objects.filter(
        reason_code="dangling_subject", resolved_at__isnull=True, subject_ref=OuterRef("resource_id")
    )
    rows = (
        PatientSource.objects.filter(patient_id__in=list(patient_ids))
        .annotate(waiting=Exists(waiting))
        .values_list(
            "patient_id", "resource_id", "patient__resource_id", "name", "sex", "patient__name", "patient__sex",
            "confirmed", "waiting",
        )
    )  # fmt: skip
    on_hold: set[int] = set()
    for patient_id, resource_id, first_id, name, sex, subject_name, subject_sex, confirmed, dangling in rows:
        if dangling or (resource_id != first_id and _conflicts(name, sex, subject_name, subject_sex, confirmed)):
            on_hold.add(patient_id)
    return on_hold


def _conflicts(name: str, sex: str, subject_name: str, subject_sex: str, confirmed: str) -> bool:
    """A linked source's demographics differ from its subject's and are not confirmed as they are now."""
    return bool(differing_fields(name, sex, subject_name, subject_sex)) and confirmed != demographics_digest(
        name, sex, subject_name, subject_sex
    )


def confirm(resource_id: str, *, by: str) -> bool:
    """A coder confirms that a linked source is the same person as it reads now. False if nothing differs."""
    source = PatientSource.objects.select_related("patient").filter(resource_id=resource_id).first()
    if source is None:
        return False
    values = (source.name, source.sex, source.patient.name, source.patient.sex)
    if not differing_fields(*values):
        return False
    source.confirmed, source.confirmed_by, source.confirmed_at = demographics_digest(*values), by, timezone.now()
    source.save(update_fields=["confirmed", "confirmed_by", "confirmed_at"])
    return True
