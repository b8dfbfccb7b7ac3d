# ruff: noqa: S608 - table and column names in this module's SQL are constants, never input
"""Write one batch of parsed rows: on PostgreSQL, COPY into a staging table and one upsert per table
(resolving ``Patient/<id>`` references with a join); elsewhere (SQLite), a version-filtered
``executemany`` upsert with references resolved in Python.

Both keep the same rule: a resource id is stored once; a row replaces the stored one only when it is
newer (``version_id`` first, then ``last_updated``). A row of the same version as the stored one is
unchanged when its stored columns are the same, and a conflict otherwise: the stored row is kept and the
line quarantined. The comparison rides on what each path already does per batch (the upsert statement;
the query for stored versions), so it adds no query per line. Every row written carries the batch id in
``ingest_batch``, which is how stored encrypted features notice a change (see ``IngestBatch``).

Table and column names in the SQL below are module constants, never input: hence the S608 waivers.
"""

from __future__ import annotations

import calendar
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models

from datadomain.ingest.parse import ConditionRow, EncounterRow, ObservationRow, PatientRow
from datadomain.models import Condition, Encounter, Observation, Patient, PatientSource
from datadomain.models.identity import PatientContact
from datadomain.models.records import ResourceIdField

# Columns the writer fills itself, or that ingest never writes (a coder's confirmation of a link).
WRITER_OWNED = ("ingest_batch",)


@dataclass(frozen=True)
class Table:
    """How one parsed row type is staged and stored, derived from its model (:func:`table_for`)."""

    name: str
    fields: tuple[
        str, ...
    ]  # the parsed row's fields, staged in this order; records start with resource_id, patient_ref
    columns: tuple[str, ...]  # stored columns, in row order (``patient_ref`` becomes ``patient_id``)
    staged_fields: tuple[models.Field[Any, Any], ...]  # the column type of each staged field
    format: Callable[[Any, int], str]  # COPY text of one parsed row and its input line number

    @property
    def is_patient(self) -> bool:
        return self.name == "datadomain_patient"

    @property
    def content(self) -> tuple[str, ...]:
        """Stored columns other than the resource's id and version: what two copies of a version share."""
        return tuple(name for name in self.columns if name not in ("resource_id", "version_id", "last_updated"))

    def pg_types(self) -> tuple[str, ...]:
        return tuple(str(field.db_type(connection)) for field in self.staged_fields)


_REFERENCE = models.CharField(max_length=64)  # a FHIR id (``Patient/<id>``), resolved to patient_id on write


def table_for(
    model: type[models.Model],
    fields: tuple[str, ...],
    *,
    staged_only: dict[str, models.Field[Any, Any]] | None = None,
    plain: tuple[str, ...] = (),
    not_written: tuple[str, ...] = (),
) -> Table:
    """The table of ``model`` filled from parsed rows with ``fields`` (a row type's ``_fields``).

    Every concrete column of the model must come from the field of the same name (the record tables'
    ``patient_id`` from ``patient_ref``), be filled by the writer (``ingest_batch``), be the model's
    automatic id, or be named in ``not_written``; a field that is not a column must be named in
    ``staged_only`` with its staging type. Anything else is a column the writer does not know: an error at
    import, before a row is written. ``plain``: text fields the parser has already restricted to
    characters COPY text never escapes (validated identifiers, codes)."""
    staged_only = staged_only or {}
    by_column = {field.attname: field for field in model._meta.concrete_fields}
    columns, types = [], []
    for name in fields:
        column = "patient_id" if name == "patient_ref" else name
        if name in staged_only:
            types.append(staged_only[name])
            continue
        if column not in by_column:
            raise ImproperlyConfigured(f"{name} is neither a column of {model.__name__} nor staged only")
        columns.append(column)
        types.append(_REFERENCE if name == "patient_ref" else by_column[column])
    missing = [
        column
        for column, field in by_column.items()
        if column not in (*columns, *WRITER_OWNED, *not_written) and not isinstance(field, models.AutoField)
    ]
    if missing:
        raise ImproperlyConfigured(
            f"{model.__name__} has columns the ingest writer does not fill: {', '.join(missing)}"
            " (add them to the parsed row, or name them in not_written)"
        )
    formatter = _formatter(fields, types, (*plain, "patient_ref"))
    return Table(model._meta.db_table, fields, tuple(columns), tuple(types), formatter)


def _copy_expression(index: int, name: str, field: models.Field[Any, Any], plain: tuple[str, ...]) -> str:
    """How one field of a parsed row (``r``) is written as COPY text, by its column type."""
    value = f"r[{index}]"
    if isinstance(field, models.DateTimeField):
        return f"_instant_text({value})"
    if isinstance(field, models.CharField | models.TextField):
        if name in plain or isinstance(field, ResourceIdField):
            return value
        return f"_maybe_text({value})" if field.null else f"_text({value})"
    if isinstance(field, models.DateField):
        return f"_date_text({value})"
    if isinstance(field, models.IntegerField | models.FloatField | models.DurationField | models.ForeignKey):
        # str() of a float is its shortest round-trip form; a duration is staged as an interval literal the
        # parser made (``"52 years"``).
        return f"_maybe({value})" if field.null else value
    raise ImproperlyConfigured(f"the ingest writer has no COPY text form for {type(field).__name__} ({name})")


def _formatter(
    names: tuple[str, ...], types: list[models.Field[Any, Any]], plain: tuple[str, ...]
) -> Callable[[Any, int], str]:
    """The COPY text of a row and its line number: one f-string per table, compiled once from the column
    types. This is the hot loop of the parser processes; a generic loop over the fields, with a call per
    value, costs twice as much."""
    parts = [_copy_expression(i, name, field, plain) for i, (name, field) in enumerate(zip(names, types, strict=True))]
    source = "lambda r, line: f'" + "".join("{" + part + "}\\t" for part in parts) + "{line}\\n'"
    namespace = {"_text": _text, "_maybe": _maybe, "_maybe_text": _maybe_text, "_instant_text": _instant_text,
                 "_date_text": _date_text}  # fmt: skip
    return eval(source, namespace)  # type: ignore[no-any-return] # noqa: S307 # nosec B307 - column types, never input


def copy_text(table: Table, rows: Sequence[tuple[Any, ...]], lines: Sequence[int]) -> str:
    """PostgreSQL COPY text of ``rows``, each followed by its input line number."""
    return "".join(map(table.format, rows, lines))


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(value: str) -> str:
    # isprintable() is false for tab, newline and carriage return: one C call rules out most escapes.
    return value if value.isprintable() and "\\" not in value else value.translate(_ESCAPES)


def _maybe_text(value: str | None) -> str:
    return "\\N" if value is None else _text(value)


def _maybe(value: object) -> str:
    return "\\N" if value is None else str(value)


# Dates and instants repeat across a feed (the parser hands out one object per distinct text), and
# formatting one costs several times a lookup: remembered, like the parser's memos.
@lru_cache(maxsize=1 << 16)
def _instant_text(value: datetime | None) -> str:
    return "\\N" if value is None else value.isoformat()


@lru_cache(maxsize=1 << 16)
def _date_text(value: date | None) -> str:
    return "\\N" if value is None else value.isoformat()


PATIENT = table_for(
    Patient,
    PatientRow._fields,
    # Kept in datadomain_patientcontact (_contacts_*), not with the patient.
    staged_only={"phone": PatientContact._meta.get_field("phone")},
    plain=("resident_id", "sex", "subject_key", "resident_id_masked"),
)
# onset_age: an onsetAge is resolved against the subject's birth date, which the subject lookup returns.
CONDITION = table_for(
    Condition,
    ConditionRow._fields,
    staged_only={"onset_age": models.DurationField(null=True)},
    plain=("code_system", "code"),
)
_ONSET = "COALESCE({r}onset_date, ({r}subject_birth + {r}onset_age)::date)"
ENCOUNTER = table_for(Encounter, EncounterRow._fields)
OBSERVATION = table_for(Observation, ObservationRow._fields)
# The links of record linkage (datadomain.PatientSource), written from the staged Patient rows by SQL: its
# row is the staged patient with the subject's id; a coder's confirmation is never written by ingest.
SOURCE = table_for(
    PatientSource,
    tuple(
        name
        for name in ("resource_id", "patient_id", *PatientRow._fields[1:])
        if name in {field.attname for field in PatientSource._meta.concrete_fields}
    ),
    not_written=("confirmed", "confirmed_by", "confirmed_at"),
)


@dataclass
class Written:
    inserted: int = 0
    updated: int = 0
    # (line number, Patient id referenced) of the records whose subject is unknown: held until it arrives
    dangling: list[tuple[int, str]] = field(default_factory=list)
    relinked: list[int] = field(default_factory=list)  # Patient lines moving a linked id to another resident
    conflicts: list[int] = field(default_factory=list)  # lines of a stored version with other content


@dataclass
class Payload:
    """One table's part of a batch: parsed rows, or (for PostgreSQL) their COPY text, and the input
    line number of each row. Built where the batch is parsed, possibly in a worker process."""

    rows: list[tuple[Any, ...]] | None
    text: str | None
    lines: list[int]

    @classmethod
    def of(cls, table: Table, rows: list[tuple[Any, ...]], lines: list[int], copy: bool) -> Payload:
        if copy:
            return cls(None, copy_text(table, rows, lines), lines)
        return cls(rows, None, lines)


class BatchWriter:
    """Writes the tables of one batch inside the caller's transaction, stamping rows with ``batch_id``."""

    def __init__(self, batch_id: int) -> None:
        self.batch_id = batch_id
        self.postgresql = connection.vendor == "postgresql"
        if self.postgresql:
            with connection.cursor() as cursor:
                # The checkpoint commits with the batch, so a crash can lose at most the last commits,
                # which the next run re-reads: waiting for each WAL flush buys nothing here.
                cursor.execute("SET LOCAL synchronous_commit = off")
                # A batch joins a few thousand staged rows to the patient table: index probes cost
                # O(batch), whereas the hash join the planner picks (staging tables have no statistics)
                # reads the whole patient table for every batch and table, O(store).
                cursor.execute("SET LOCAL enable_hashjoin = off")
                cursor.execute("SET LOCAL enable_mergejoin = off")

    def write(self, table: Table, payload: Payload) -> Written:
        """Upsert one table's rows (unique resource ids)."""
        if not payload.lines:
            return Written()
        if self.postgresql:
            text = payload.text if payload.text is not None else copy_text(table, payload.rows or [], payload.lines)
            return _write_postgresql(table, text, self.batch_id)
        assert payload.rows is not None
        return _write_generic(table, payload.rows, payload.lines, self.batch_id)


def _update_set(table: Table) -> str:
    columns = (*table.columns, "ingest_batch")
    return ", ".join(f"{column} = EXCLUDED.{column}" for column in columns if column != "resource_id")


def _newer(table: Table) -> str:
    return f"(EXCLUDED.version_id, EXCLUDED.last_updated) > ({table.name}.version_id, {table.name}.last_updated)"


# --- PostgreSQL ------------------------------------------------------------------------------------


def _write_postgresql(table: Table, text: str, batch_id: int) -> Written:
    stage = f"dd_stage_{table.name.removeprefix('datadomain_')}"
    definition = ", ".join(f"{c} {t}" for c, t in zip(table.fields, table.pg_types(), strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} ({definition}, line_number bigint) ON COMMIT DELETE ROWS"
        )
        cursor.execute(f"TRUNCATE {stage}")
        cursor.cursor.copy_expert(
            f"COPY {stage} ({', '.join(table.fields)}, line_number) FROM STDIN", io.StringIO(text)
        )
        if table.is_patient:
            return _link_postgresql(cursor, stage, batch_id)
        # One index probe per staged row resolves Patient/<id> through the links of every source;
        # unresolved rows are the dangling ones.
        resolved = (
            f"resolved AS MATERIALIZED (SELECT s.*, l.patient_id, l.birth_date AS subject_birth FROM {stage} s"
            " LEFT JOIN datadomain_patientsource l ON l.resource_id = s.patient_ref)"
        )
        return _upsert_postgresql(cursor, table, resolved, batch_id, "patient_id IS NOT NULL", missing=True)


def _expression(table: Table, column: str, prefix: str = "") -> str:
    if table.name == CONDITION.name and column == "onset_date":
        return _ONSET.format(r=prefix)
    return f"{prefix}{column}"


def _upsert_postgresql(cursor: Any, table: Table, resolved: str, batch_id: int, where: str, missing: bool) -> Written:
    """Upsert the rows of the CTE ``resolved`` that satisfy ``where``; count, and find the conflicts."""
    written = Written()
    columns = ", ".join((*table.columns, "ingest_batch"))
    selected = ", ".join(_expression(table, column) for column in table.columns)
    # Every CTE sees the table as it was before the statement: a conflict is with the stored row.
    stored = ", ".join(f"t.{column}" for column in table.content)
    staged = ", ".join(_expression(table, column, "r.") for column in table.content)
    cursor.execute(
        f"WITH {resolved}, up AS (INSERT INTO {table.name} ({columns})"
        f" SELECT {selected}, {int(batch_id)} FROM resolved WHERE {where}"
        f" ON CONFLICT (resource_id) DO UPDATE SET {_update_set(table)} WHERE {_newer(table)}"
        " RETURNING (xmax = 0) AS inserted),"
        f" conflicts AS (SELECT r.line_number FROM resolved r JOIN {table.name} t ON t.resource_id = r.resource_id"
        f" WHERE r.{where} AND t.version_id = r.version_id AND t.last_updated = r.last_updated"
        f" AND ({stored}) IS DISTINCT FROM ({staged})"
        # A conflicting row is neither inserted nor updated: when every row was, there is none to look
        # for, and the probe of the stored rows (one per row: a tenth of a bulk load) is never run.
        f" AND (SELECT count(*) FROM up) < (SELECT count(*) FROM resolved WHERE {where}))"
        " SELECT (SELECT count(*) FILTER (WHERE inserted) FROM up), (SELECT count(*) FILTER (WHERE NOT inserted)"
        " FROM up), d.lines, d.refs, (SELECT coalesce(array_agg(line_number), ARRAY[]::bigint[]) FROM conflicts)"
        # The dangling rows' line numbers and references from one scan, so that they pair up.
        " FROM (SELECT coalesce(array_agg(line_number), ARRAY[]::bigint[]) AS lines,"
        f" coalesce(array_agg({'patient_ref' if missing else 'resource_id'}), ARRAY[]::text[]) AS refs"
        f" FROM resolved WHERE {'NOT (' + where + ')' if missing else 'false'}) d"
    )
    written.inserted, written.updated, dangling, references, conflicts = cursor.fetchone()
    written.dangling = sorted(zip(dangling, references, strict=True))
    written.conflicts = sorted(conflicts)
    return written


def _link_postgresql(cursor: Any, stage: str, batch_id: int) -> Written:
    """Patients: a linked source id that now names another resident ID is refused (its records belong to
    the first); the first source of a new resident ID creates the subject (``datadomain_patient``, kept
    up to date by that source's newer versions); every source is upserted into the links."""
    cursor.execute(
        f"DELETE FROM {stage} s USING datadomain_patientsource l, datadomain_patient p"
        " WHERE l.resource_id = s.resource_id AND p.id = l.patient_id AND p.resident_id <> s.resident_id"
        " RETURNING s.line_number"
    )
    relinked = sorted(line for (line,) in cursor.fetchall())
    primary = (
        f"primary_rows AS (SELECT DISTINCT ON (s.resident_id) s.* FROM {stage} s WHERE NOT EXISTS"
        " (SELECT 1 FROM datadomain_patient p WHERE p.resident_id = s.resident_id AND p.resource_id <> s.resource_id)"
        " ORDER BY s.resident_id, s.line_number)"
    )
    cursor.execute(
        f"WITH {primary} INSERT INTO datadomain_patient ({', '.join((*PATIENT.columns, 'ingest_batch'))})"
        f" SELECT {', '.join(PATIENT.columns)}, {int(batch_id)} FROM primary_rows"
        f" ON CONFLICT (resource_id) DO UPDATE SET {_update_set(PATIENT)} WHERE {_newer(PATIENT)}"
    )
    resolved = (
        f"resolved AS MATERIALIZED (SELECT s.*, p.id AS patient_id FROM {stage} s"
        " JOIN datadomain_patient p ON p.resident_id = s.resident_id)"
    )
    written = _upsert_postgresql(cursor, SOURCE, resolved, batch_id, "patient_id IS NOT NULL", missing=False)
    written.relinked = relinked
    _contacts_postgresql(cursor, stage)
    return written


# The phone number held for a subject (datadomain.PatientContact) follows the subject's own record: a
# staged Patient row sets it (or, without a number, removes it) only when it is the version now stored as
# the subject, so an older version sent again, or another hospital's copy, never replaces it.
def _contacts_postgresql(cursor: Any, stage: str) -> None:
    current = (
        f"current AS MATERIALIZED (SELECT DISTINCT ON (p.id) p.id AS patient_id, p.subject_key, s.phone FROM {stage} s"
        " JOIN datadomain_patient p ON p.resident_id = s.resident_id AND p.resource_id = s.resource_id"
        " AND p.version_id = s.version_id AND p.last_updated = s.last_updated ORDER BY p.id, s.line_number DESC)"
    )
    cursor.execute(
        f"WITH {current}, gone AS (DELETE FROM datadomain_patientcontact c USING current"
        " WHERE c.patient_id = current.patient_id AND current.phone = '')"
        " INSERT INTO datadomain_patientcontact (patient_id, subject_key, phone, updated_at)"
        " SELECT patient_id, subject_key, phone, now() FROM current WHERE phone <> ''"
        " ON CONFLICT (patient_id) DO UPDATE SET phone = EXCLUDED.phone, subject_key = EXCLUDED.subject_key,"
        " updated_at = EXCLUDED.updated_at WHERE datadomain_patientcontact.phone <> EXCLUDED.phone"
        " OR datadomain_patientcontact.subject_key <> EXCLUDED.subject_key"
    )


# --- other databases (SQLite) ----------------------------------------------------------------------


def _adapt(value: Any) -> Any:
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _stored_datetime(value: Any) -> Any:
    """A stored ``last_updated`` in the same text form as :func:`_adapt` gives (UTC, naive)."""
    if isinstance(value, datetime):
        return str(value) if value.tzinfo is None else _adapt(value)
    return value


def _stored(value: Any) -> Any:
    """A stored value in the form :func:`_adapt` gives the parsed one (the backend converts dates back)."""
    if isinstance(value, datetime):
        return _stored_datetime(value)
    return value.isoformat() if isinstance(value, date) else value


def _select_in(sql: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            cursor.execute(sql.format(placeholders=", ".join(["%s"] * len(chunk))), chunk)
            found.extend(cursor.fetchall())
    return found


def _values(table: Table, row: Any, **given: Any) -> tuple[Any, ...]:
    """A parsed row (a NamedTuple) as the values of ``table.columns``, some of them ``given``."""
    return tuple(given[column] if column in given else getattr(row, column) for column in table.columns)


def _write_generic(table: Table, rows: Sequence[Any], lines: Sequence[int], batch_id: int) -> Written:
    pairs = list(zip(rows, lines, strict=True))
    if table.is_patient:
        return _link_generic(pairs, batch_id)
    refs = sorted({row.patient_ref for row, _ in pairs})
    links = {
        ref: (patient_id, birth)
        for ref, patient_id, birth in _select_in(
            "SELECT resource_id, patient_id, birth_date FROM datadomain_patientsource"
            " WHERE resource_id IN ({placeholders})",
            refs,
        )
    }
    dangling = [(line, row.patient_ref) for row, line in pairs if row.patient_ref not in links]
    resolved = []
    for row, line in pairs:
        if row.patient_ref not in links:
            continue
        patient_id, birth = links[row.patient_ref]
        given = {"patient_id": patient_id}
        if getattr(row, "onset_age", None) is not None:
            given["onset_date"] = _plus_age(_as_date(birth), row.onset_age)
        resolved.append((_values(table, row, **given), line))
    written = _upsert_generic(table, resolved, batch_id)
    written.dangling = dangling
    return written


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _plus_age(birth: date, interval: str) -> date:
    """``birth`` plus an interval literal of the parser (``"52 years"``, ``"7 months"``, ``"30 days"``)."""
    count_text, unit = interval.split()
    count = int(count_text)
    if unit == "days":
        return birth + timedelta(days=count)
    months = birth.month - 1 + (count * 12 if unit == "years" else count)
    year, month = birth.year + months // 12, months % 12 + 1
    return date(year, month, min(birth.day, calendar.monthrange(year, month)[1]))


def _link_generic(pairs: list[tuple[PatientRow, int]], batch_id: int) -> Written:
    """The SQLite form of :func:`_link_postgresql`."""
    linked = dict(
        _select_in(
            "SELECT l.resource_id, p.resident_id FROM datadomain_patientsource l"
            " JOIN datadomain_patient p ON p.id = l.patient_id WHERE l.resource_id IN ({placeholders})",
            [row.resource_id for row, _ in pairs],
        )
    )
    relinked = [line for row, line in pairs if linked.get(row.resource_id, row.resident_id) != row.resident_id]
    pairs = [(row, line) for row, line in pairs if linked.get(row.resource_id, row.resident_id) == row.resident_id]
    owners = dict(
        _select_in(
            "SELECT resident_id, resource_id FROM datadomain_patient WHERE resident_id IN ({placeholders})",
            [row.resident_id for row, _ in pairs],
        )
    )
    primary: dict[str, tuple[PatientRow, int]] = {}
    for row, line in pairs:
        if owners.get(row.resident_id, row.resource_id) == row.resource_id:
            primary.setdefault(row.resident_id, (row, line))
    _upsert_generic(PATIENT, [(_values(PATIENT, row), line) for row, line in primary.values()], batch_id)
    subjects = dict(
        _select_in(
            "SELECT resident_id, id FROM datadomain_patient WHERE resident_id IN ({placeholders})",
            [row.resident_id for row, _ in pairs],
        )
    )
    sources = [(_values(SOURCE, row, patient_id=subjects[row.resident_id]), line) for row, line in pairs]
    written = _upsert_generic(SOURCE, sources, batch_id)
    written.relinked = relinked
    _contacts_generic(pairs)
    return written


def _contacts_generic(pairs: list[tuple[PatientRow, int]]) -> None:
    """The SQLite form of :func:`_contacts_postgresql`."""
    stored = {
        found[0]: found[1:]
        for found in _select_in(
            "SELECT resident_id, id, subject_key, resource_id, version_id, last_updated FROM datadomain_patient"
            " WHERE resident_id IN ({placeholders})",
            [row.resident_id for row, _ in pairs],
        )
    }
    current: dict[int, tuple[str, str]] = {}
    for row, _ in sorted(pairs, key=lambda pair: pair[1]):  # the last line of a subject's version wins
        found = stored.get(row.resident_id)
        if found is None:
            continue
        patient_id, subject_key, resource_id, version_id, last_updated = found
        stored_version = (resource_id, version_id, _stored_datetime(last_updated))
        if stored_version == (row.resource_id, row.version_id, _adapt(row.last_updated)):
            current[patient_id] = (subject_key, row.phone)
    if not current:
        return
    now = _adapt(datetime.now(tz=UTC))
    with connection.cursor() as cursor:
        gone = [(patient_id,) for patient_id, (_, phone) in current.items() if not phone]
        if gone:
            cursor.executemany("DELETE FROM datadomain_patientcontact WHERE patient_id = %s", gone)
        kept = [(patient_id, key, phone, now) for patient_id, (key, phone) in current.items() if phone]
        if kept:
            cursor.executemany(
                "INSERT INTO datadomain_patientcontact (patient_id, subject_key, phone, updated_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (patient_id) DO UPDATE SET phone = excluded.phone,"
                " subject_key = excluded.subject_key, updated_at = excluded.updated_at",
                kept,
            )


def _upsert_generic(table: Table, pairs: Sequence[tuple[tuple[Any, ...], int]], batch_id: int) -> Written:
    """Upsert ``pairs`` (rows in ``table.columns`` order, line numbers): newer versions replace stored ones."""
    written = Written()
    id_at, version_at, updated_at = (
        table.columns.index(name) for name in ("resource_id", "version_id", "last_updated")
    )
    content_at = [table.columns.index(column) for column in table.content]
    existing = {
        found[0]: ((found[1], _stored_datetime(found[2])), tuple(map(_stored, found[3:])))
        for found in _select_in(
            f"SELECT resource_id, version_id, last_updated, {', '.join(table.content)} FROM {table.name}"
            " WHERE resource_id IN ({placeholders})",
            [row[id_at] for row, _ in pairs],
        )
    }
    changed = []
    for row, line in pairs:
        adapted = tuple(map(_adapt, row))
        version = (adapted[version_at], adapted[updated_at])
        stored_version, stored_content = existing.get(adapted[id_at], (None, None))
        if stored_version is None or version > stored_version:
            changed.append((*adapted, batch_id))
        elif version == stored_version and tuple(adapted[i] for i in content_at) != stored_content:
            written.conflicts.append(line)
    written.inserted = sum(1 for row in changed if row[id_at] not in existing)
    written.updated = len(changed) - written.inserted
    if changed:
        columns = (*table.columns, "ingest_batch")
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
                f" ON CONFLICT (resource_id) DO UPDATE SET {_update_set(table)}",
                changed,
            )
    return written
