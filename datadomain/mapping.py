"""Mapping tables per source: hospitals' local diagnosis codes and Chinese diagnosis texts to ICD-10.

A Condition without an ICD-10-family coding is stored with its local code (a coding of a local system
that has a mapping table) or its diagnosis text (source ``text:`` + ``meta.source``) and an empty
``code``; extraction maps it through the source's active mapping, else, for text, the catalog's starter
table of common Chinese diagnosis names (``catalog/zh_diagnosis_names.csv``). Bureau coders manage the
tables in the admin:

- **CSV import** (``source,local_code,icd10,note``): each row becomes a proposal;
- **four-eyes approval**: a proposal becomes active only when a coder other than its proposer approves
  it; the active row it replaces is retired (kept, with who decided and when);
- **recomputation**: approval stamps the condition records it maps with a new ingest batch, so every
  stored vector of the affected subjects becomes stale and is recomputed on its next use (``apply``, run
  by the data domain: the web zone cannot write records);
- **queue and coverage**: ``refresh`` counts the condition records of every local code and text (the
  ``UnmappedCode`` snapshot the admin lists, unmapped first by records held) and ``coverage`` gives per
  source the share of its condition records that map.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from datadomain import catalog
from datadomain.catalog import split_codes, text_key
from datadomain.errors import DomainError
from datadomain.models import CodeMapping, Condition, IngestBatch, UnmappedCode

IMPORT_MAX_ROWS = 20_000
IMPORT_MAX_BYTES = 4 << 20
TEXT = "text:"
Key = tuple[str, str]


def active_map(keys: Iterable[Key]) -> dict[Key, tuple[str, ...]]:
    """The ICD-10 codes each (source, local code) maps to: the source's active mapping, else (text only)
    the catalog's starter table; keys that map to nothing are left out."""
    wanted = set(keys)
    if not wanted:
        return {}
    found: dict[Key, tuple[str, ...]] = {}
    sources = {source for source, _ in wanted}
    rows = CodeMapping.objects.filter(
        status=CodeMapping.Status.ACTIVE, source__in=sources, local_code__in={code for _, code in wanted}
    ).values_list("source", "local_code", "icd10")
    for source, local, icd10 in rows:
        if (source, local) in wanted:
            found[(source, local)] = tuple(icd10.split())
    starter = catalog.current().text_map
    for source, local in wanted - set(found):
        if source.startswith(TEXT) and local in starter:
            found[(source, local)] = starter[local]
    return found


def local_systems() -> frozenset[str]:
    """Local code systems that have a mapping table: the parser reads their codings."""
    return frozenset(CodeMapping.objects.exclude(source__startswith=TEXT).values_list("source", flat=True).distinct())


# --- proposals and approval ------------------------------------------------------------------------


@dataclass
class ImportResult:
    proposed: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (CSV line, message without values)


def _codes(text: str) -> str | None:
    codes = split_codes(text)
    if any(not (code.isascii() and code.isalnum() and len(code) <= 20) for code in codes):
        return None
    joined = " ".join(dict.fromkeys(codes))
    return joined if len(joined) <= 120 else None


def propose(*, source: str, local_code: str, icd10: str, note: str = "", by: str) -> CodeMapping:
    """A mapping change awaiting a second coder; replaces this coder's own pending proposal for the key."""
    source, key, codes = source.strip(), text_key(local_code), _codes(icd10)
    if not source or len(source) > 200 or not key:
        raise DomainError("invalid_input", "A mapping needs a source (at most 200 characters) and a local code.")
    if source.startswith(TEXT) and source != TEXT + text_key(source[len(TEXT) :]):
        raise DomainError("invalid_input", "A text source is text: followed by the sending system's meta.source.")
    if codes is None:
        raise DomainError("invalid_input", "The ICD-10 codes are malformed (at most 120 characters).")
    with transaction.atomic():
        pending = CodeMapping.objects.select_for_update().filter(
            source=source, local_code=key, status=CodeMapping.Status.PENDING
        )
        existing = pending.first()
        if existing is not None and existing.proposed_by != by:
            raise DomainError("conflict", "Another coder's change to this code awaits approval.")
        if existing is not None:
            existing.icd10, existing.note = codes, note[:300]
            existing.save(update_fields=["icd10", "note"])
            return existing
        return CodeMapping.objects.create(source=source, local_code=key, icd10=codes, note=note[:300], proposed_by=by)


def import_csv(data: bytes, *, by: str) -> ImportResult:
    """Proposals from a CSV file (UTF-8, optional BOM; header ``source,local_code,icd10,note``). Each bad
    row is reported with its line and the others are proposed."""
    result = ImportResult()
    if len(data) > IMPORT_MAX_BYTES:
        result.errors.append((0, "the file is larger than 4 MiB"))
        return result
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        result.errors.append((0, "the file is not UTF-8 text"))
        return result
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"source", "local_code", "icd10"} <= set(reader.fieldnames):
        result.errors.append((1, "the header must name the columns source, local_code and icd10"))
        return result
    for number, row in enumerate(reader, start=2):
        if number - 1 > IMPORT_MAX_ROWS:
            result.errors.append((number, f"more than {IMPORT_MAX_ROWS} rows: the rest was not read"))
            break
        try:
            propose(
                source=row.get("source") or "",
                local_code=row.get("local_code") or "",
                icd10=row.get("icd10") or "",
                note=row.get("note") or "",
                by=by,
            )
            result.proposed += 1
        except DomainError as error:
            result.errors.append((number, str(error.message)))
    return result


def approve(mapping_id: int, *, by: str) -> CodeMapping:
    """Four-eyes: a coder other than the proposer makes a pending change active; the active row it
    replaces is retired. The caller then runs :func:`apply` in the data domain."""
    with transaction.atomic():
        change = CodeMapping.objects.select_for_update().filter(pk=mapping_id).first()
        if change is None or change.status != CodeMapping.Status.PENDING:
            raise DomainError("not_found", "No such pending mapping change.")
        if change.proposed_by == by:
            raise DomainError("forbidden", "A mapping change needs a second coder: the proposer cannot approve it.")
        now = timezone.now()
        CodeMapping.objects.filter(
            source=change.source, local_code=change.local_code, status=CodeMapping.Status.ACTIVE
        ).update(status=CodeMapping.Status.RETIRED, decided_at=now)
        change.status, change.decided_by, change.decided_at = CodeMapping.Status.ACTIVE, by, now
        change.save(update_fields=["status", "decided_by", "decided_at"])
    return change


def reject(mapping_id: int, *, by: str) -> None:
    updated = CodeMapping.objects.filter(pk=mapping_id, status=CodeMapping.Status.PENDING).update(
        status=CodeMapping.Status.REJECTED, decided_by=by, decided_at=timezone.now()
    )
    if not updated:
        raise DomainError("not_found", "No such pending mapping change.")


def apply(source: str, local_code: str) -> int:
    """After a change to (source, local code): stamp the condition records it maps with a new ingest batch,
    so that the affected subjects' stored vectors are stale (recomputed on next use). Returns how many
    records were stamped; refreshes the queue."""
    with transaction.atomic():
        batch = IngestBatch.objects.create().pk
        stamped = Condition.objects.filter(code="", local_source=source, local_code=local_code).update(
            ingest_batch=batch
        )
    refresh()
    return stamped


# --- queue and coverage ----------------------------------------------------------------------------


def refresh() -> int:
    """Rebuild the queue snapshot: every local code and text in use, its records and whether it maps."""
    counts = list(
        Condition.objects.filter(code="")
        .values_list("local_source", "local_code")
        .annotate(records=Count("resource_id"))
        .order_by()
    )
    mapped = active_map((source, local) for source, local, _ in counts)
    with transaction.atomic():
        UnmappedCode.objects.all().delete()
        UnmappedCode.objects.bulk_create(
            UnmappedCode(source=source, local_code=local, records=records, mapped=(source, local) in mapped)
            for source, local, records in counts
        )
    return len(counts)


@dataclass(frozen=True)
class Coverage:
    source: str
    records: int
    mapped: int

    @property
    def share(self) -> float:
        return self.mapped / self.records if self.records else 1.0


def coverage() -> list[Coverage]:
    """Per source, from the last snapshot: condition records, those that map, the share."""
    rows = (
        UnmappedCode.objects.values("source")
        .annotate(total=Coalesce(Sum("records"), 0), done=Coalesce(Sum("records", filter=Q(mapped=True)), 0))
        .order_by("source")
    )
    return [Coverage(row["source"], int(row["total"]), int(row["done"])) for row in rows]
