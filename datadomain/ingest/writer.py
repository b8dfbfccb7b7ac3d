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
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection

from datadomain.ingest.parse import ConditionRow, EncounterRow, ObservationRow, PatientRow


@dataclass(frozen=True)
class Table:
    name: str
    fields: tuple[str, ...]  # the parsed row's fields; records start with resource_id, patient_ref
    pg_types: tuple[str, ...]
    staged_only: tuple[str, ...] = ()  # parsed fields that are not stored (``onset_age``)

    @property
    def is_patient(self) -> bool:
        return self.name == "datadomain_patient"

    @property
    def columns(self) -> tuple[str, ...]:
        """Stored columns: ``patient_ref`` becomes ``patient_id``."""
        return tuple(
            "patient_id" if name == "patient_ref" else name for name in self.fields if name not in self.staged_only
        )

    @property
    def content(self) -> tuple[str, ...]:
        """Stored columns other than the resource's id and version: what two copies of a version share."""
        return tuple(name for name in self.columns if name not in ("resource_id", "version_id", "last_updated"))


_RECORD_TYPES = ("varchar(64)", "varchar(64)", "bigint", "timestamptz")
PATIENT = Table(
    "datadomain_patient",
    PatientRow._fields,
    ("varchar(64)", "varchar(18)", "varchar(200)", "date", "varchar(8)", "varchar(64)", "varchar(18)", "bigint",
     "timestamptz", "varchar(32)"),
    staged_only=("phone",),  # kept in datadomain_patientcontact (_contacts_*), not with the patient
)  # fmt: skip
CONDITION = Table(
    "datadomain_condition",
    ConditionRow._fields,
    (
        *_RECORD_TYPES,
        "varchar(8)",
        "varchar(120)",
        "varchar(20)",
        "varchar(20)",
        "date",
        "varchar(200)",
        "varchar(200)",
        "interval",
    ),
    staged_only=("onset_age",),
)
# An onsetAge is resolved against the subject's birth date, which the subject lookup returns anyway.
_ONSET = "COALESCE({r}onset_date, ({r}subject_birth + {r}onset_age)::date)"
ENCOUNTER = Table(
    "datadomain_encounter", EncounterRow._fields, (*_RECORD_TYPES, "varchar(16)", "varchar(20)", "date", "date")
)
OBSERVATION = Table(
    "datadomain_observation",
    ObservationRow._fields,
    (*_RECORD_TYPES, "varchar(16)", "varchar(20)", "date", "double precision", "double precision", "varchar(16)"),
)

# The links of record linkage (datadomain.PatientSource): written from the staged Patient rows.
SOURCE = Table(
    "datadomain_patientsource",
    ("resource_id", "patient_id", "name", "birth_date", "sex", "version_id", "last_updated"),
    ("varchar(64)", "bigint", "varchar(200)", "date", "varchar(8)", "bigint", "timestamptz"),
)


@dataclass
class Written:
    inserted: int = 0
    updated: int = 0
    dangling: list[int] = field(default_factory=list)  # line numbers whose subject is unknown
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

_SPECIAL = re.compile(r"[\\\t\n\r]")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(value: str) -> str:
    return value.translate(_ESCAPES) if _SPECIAL.search(value) else value


def _maybe(value: object) -> str:
    return "\\N" if value is None else str(value)


# One formatter per table: COPY text of a parsed row. Ids and references are FHIR ids (no tab, newline
# or backslash, checked by the parser) and codes are alphanumeric; every other text field is escaped.
_FORMATTERS: dict[str, Callable[[Any], str]] = {
    "datadomain_patient": lambda r: (
        f"{r[0]}\t{r[1]}\t{_text(r[2])}\t{r[3]}\t{r[4]}\t{r[5]}\t{r[6]}\t{r[7]}\t{r[8].isoformat()}\t{_text(r[9])}"
    ),
    "datadomain_condition": lambda r: (
        f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3].isoformat()}\t{r[4]}\t{r[5]}\t{_text(r[6])}\t{_text(r[7])}\t{_maybe(r[8])}"
        f"\t{_text(r[9])}\t{_text(r[10])}\t{_maybe(r[11])}"
    ),
    "datadomain_encounter": lambda r: (
        f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3].isoformat()}\t{_text(r[4])}\t{_text(r[5])}\t{r[6]}\t{_maybe(r[7])}"
    ),
    "datadomain_observation": lambda r: (
        f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3].isoformat()}\t{_text(r[4])}\t{_text(r[5])}\t{r[6]}\t{r[7]!r}"
        f"\t{_maybe(r[8])}\t{_text(r[9])}"
    ),
}


def copy_text(table: Table, rows: Sequence[tuple[Any, ...]], lines: Sequence[int]) -> str:
    """PostgreSQL COPY text of ``rows``, each followed by its input line number."""
    formatter = _FORMATTERS[table.name]
    return "".join([f"{formatter(row)}\t{line}\n" for row, line in zip(rows, lines, strict=True)])


_SOURCE_COLUMNS = ("resource_id", "patient_id", "name", "birth_date", "sex", "version_id", "last_updated")


def _write_postgresql(table: Table, text: str, batch_id: int) -> Written:
    stage = f"dd_stage_{table.name.removeprefix('datadomain_')}"
    definition = ", ".join(f"{c} {t}" for c, t in zip(table.fields, table.pg_types, strict=True))
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
        f" AND ({stored}) IS DISTINCT FROM ({staged}))"
        " SELECT (SELECT count(*) FILTER (WHERE inserted) FROM up), (SELECT count(*) FILTER (WHERE NOT inserted)"
        " FROM up), (SELECT coalesce(array_agg(line_number), ARRAY[]::bigint[]) FROM resolved"
        f" WHERE {'NOT (' + where + ')' if missing else 'false'}),"
        " (SELECT coalesce(array_agg(line_number), ARRAY[]::bigint[]) FROM conflicts)"
    )
    written.inserted, written.updated, dangling, conflicts = cursor.fetchone()
    written.dangling = sorted(dangling)
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


def _write_generic(table: Table, rows: Sequence[tuple[Any, ...]], lines: Sequence[int], batch_id: int) -> Written:
    pairs = list(zip(rows, lines, strict=True))
    if table.is_patient:
        return _link_generic(pairs, batch_id)
    refs = sorted({row[1] for row, _ in pairs})
    links = {
        ref: (patient_id, birth)
        for ref, patient_id, birth in _select_in(
            "SELECT resource_id, patient_id, birth_date FROM datadomain_patientsource"
            " WHERE resource_id IN ({placeholders})",
            refs,
        )
    }
    dangling = [line for row, line in pairs if row[1] not in links]
    resolved = []
    age_at = table.fields.index("onset_age") if "onset_age" in table.fields else None
    onset_at = table.columns.index("onset_date") if age_at is not None else 0
    for row, line in pairs:
        if row[1] not in links:
            continue
        patient_id, birth = links[row[1]]
        values = (row[0], patient_id, *row[2 : len(table.columns)])
        if age_at is not None and row[age_at] is not None:
            onset = _plus_age(_as_date(birth), row[age_at])
            values = (*values[:onset_at], onset, *values[onset_at + 1 :])
        resolved.append((values, line))
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


def _link_generic(pairs: list[tuple[tuple[Any, ...], int]], batch_id: int) -> Written:
    """The SQLite form of :func:`_link_postgresql`."""
    linked = dict(
        _select_in(
            "SELECT l.resource_id, p.resident_id FROM datadomain_patientsource l"
            " JOIN datadomain_patient p ON p.id = l.patient_id WHERE l.resource_id IN ({placeholders})",
            [row[0] for row, _ in pairs],
        )
    )
    relinked = [line for row, line in pairs if linked.get(row[0], row[1]) != row[1]]
    pairs = [(row, line) for row, line in pairs if linked.get(row[0], row[1]) == row[1]]
    owners = dict(
        _select_in(
            "SELECT resident_id, resource_id FROM datadomain_patient WHERE resident_id IN ({placeholders})",
            [row[1] for row, _ in pairs],
        )
    )
    primary: dict[str, tuple[tuple[Any, ...], int]] = {}
    for row, line in pairs:
        if owners.get(row[1], row[0]) == row[0]:
            primary.setdefault(row[1], (row, line))
    stored_width = len(PATIENT.columns)  # the staged phone is not a patient column
    _upsert_generic(PATIENT, [(row[:stored_width], line) for row, line in primary.values()], batch_id)
    subjects = dict(
        _select_in(
            "SELECT resident_id, id FROM datadomain_patient WHERE resident_id IN ({placeholders})",
            [row[1] for row, _ in pairs],
        )
    )
    sources = [((row[0], subjects[row[1]], row[2], row[3], row[4], row[7], row[8]), line) for row, line in pairs]
    written = _upsert_generic(SOURCE, sources, batch_id)
    written.relinked = relinked
    _contacts_generic(pairs)
    return written


def _contacts_generic(pairs: list[tuple[tuple[Any, ...], int]]) -> None:
    """The SQLite form of :func:`_contacts_postgresql`."""
    stored = {
        found[0]: found[1:]
        for found in _select_in(
            "SELECT resident_id, id, subject_key, resource_id, version_id, last_updated FROM datadomain_patient"
            " WHERE resident_id IN ({placeholders})",
            [row[1] for row, _ in pairs],
        )
    }
    current: dict[int, tuple[str, str]] = {}
    for row, _ in sorted(pairs, key=lambda pair: pair[1]):  # the last line of a subject's version wins
        found = stored.get(row[1])
        if found is None:
            continue
        patient_id, subject_key, resource_id, version_id, last_updated = found
        if (resource_id, version_id, _stored_datetime(last_updated)) == (row[0], row[7], _adapt(row[8])):
            current[patient_id] = (subject_key, row[9])
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
    version_at = table.columns.index("version_id")
    content_at = [table.columns.index(column) for column in table.content]
    existing = {
        found[0]: ((found[1], _stored_datetime(found[2])), tuple(map(_stored, found[3:])))
        for found in _select_in(
            f"SELECT resource_id, version_id, last_updated, {', '.join(table.content)} FROM {table.name}"
            " WHERE resource_id IN ({placeholders})",
            [row[0] for row, _ in pairs],
        )
    }
    changed = []
    for row, line in pairs:
        adapted = tuple(map(_adapt, row))
        version = adapted[version_at : version_at + 2]
        stored_version, stored_content = existing.get(adapted[0], (None, None))
        if stored_version is None or version > stored_version:
            changed.append((*adapted, batch_id))
        elif version == stored_version and tuple(adapted[i] for i in content_at) != stored_content:
            written.conflicts.append(line)
    written.inserted = sum(1 for row in changed if row[0] not in existing)
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
