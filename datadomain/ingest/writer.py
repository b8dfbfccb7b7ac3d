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

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.db import connection

from datadomain.ingest.parse import ConditionRow, EncounterRow, ObservationRow, PatientRow


@dataclass(frozen=True)
class Table:
    name: str
    fields: tuple[str, ...]  # the parsed row's fields; records start with resource_id, patient_ref
    pg_types: tuple[str, ...]

    @property
    def is_patient(self) -> bool:
        return self.name == "datadomain_patient"

    @property
    def columns(self) -> tuple[str, ...]:
        """Stored columns: ``patient_ref`` becomes ``patient_id``."""
        return tuple("patient_id" if name == "patient_ref" else name for name in self.fields)

    @property
    def content(self) -> tuple[str, ...]:
        """Stored columns other than the resource's id and version: what two copies of a version share."""
        return tuple(name for name in self.columns if name not in ("resource_id", "version_id", "last_updated"))


_RECORD_TYPES = ("varchar(64)", "varchar(64)", "bigint", "timestamptz")
PATIENT = Table(
    "datadomain_patient",
    PatientRow._fields,
    ("varchar(64)", "varchar(18)", "varchar(200)", "date", "varchar(8)", "varchar(64)", "varchar(18)", "bigint",
     "timestamptz"),
)  # fmt: skip
CONDITION = Table(
    "datadomain_condition",
    ConditionRow._fields,
    (*_RECORD_TYPES, "varchar(8)", "varchar(20)", "varchar(20)", "varchar(20)", "date"),
)
ENCOUNTER = Table(
    "datadomain_encounter", EncounterRow._fields, (*_RECORD_TYPES, "varchar(16)", "varchar(20)", "date", "date")
)
OBSERVATION = Table(
    "datadomain_observation",
    ObservationRow._fields,
    (*_RECORD_TYPES, "varchar(16)", "varchar(20)", "date", "double precision", "double precision", "varchar(16)"),
)


@dataclass
class Written:
    inserted: int = 0
    updated: int = 0
    dangling: list[int] = field(default_factory=list)  # line numbers whose subject is unknown
    duplicates: list[int] = field(default_factory=list)  # lines whose resident ID another Patient holds
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
        f"{r[0]}\t{r[1]}\t{_text(r[2])}\t{r[3]}\t{r[4]}\t{r[5]}\t{r[6]}\t{r[7]}\t{r[8].isoformat()}"
    ),
    "datadomain_condition": lambda r: (
        f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3].isoformat()}\t{r[4]}\t{r[5]}\t{_text(r[6])}\t{_text(r[7])}\t{_maybe(r[8])}"
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


def _write_postgresql(table: Table, text: str, batch_id: int) -> Written:
    stage = f"dd_stage_{table.name.removeprefix('datadomain_')}"
    definition = ", ".join(f"{c} {t}" for c, t in zip(table.fields, table.pg_types, strict=True))
    columns = ", ".join((*table.columns, "ingest_batch"))
    written = Written()
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} ({definition}, line_number bigint) ON COMMIT DELETE ROWS"
        )
        cursor.execute(f"TRUNCATE {stage}")
        cursor.cursor.copy_expert(
            f"COPY {stage} ({', '.join(table.fields)}, line_number) FROM STDIN", io.StringIO(text)
        )
        if table.is_patient:
            # A resident ID already stored under another Patient id: refuse the line, keep the stored one.
            cursor.execute(
                f"DELETE FROM {stage} s USING datadomain_patient p"
                " WHERE p.resident_id = s.resident_id AND p.resource_id <> s.resource_id RETURNING s.line_number"
            )
            written.duplicates = sorted(line for (line,) in cursor.fetchall())
            resolved = f"resolved AS (SELECT s.*, 0 AS patient_id FROM {stage} s)"
            selected = ", ".join(table.fields)
        else:
            # One index probe per staged row resolves Patient/<id>; unresolved rows are the dangling ones.
            resolved = (
                f"resolved AS MATERIALIZED (SELECT s.*, p.id AS patient_id FROM {stage} s"
                " LEFT JOIN datadomain_patient p ON p.resource_id = s.patient_ref)"
            )
            selected = ", ".join(table.columns)
        # Every CTE sees the table as it was before the statement: a conflict is with the stored row.
        stored = ", ".join(f"t.{column}" for column in table.content)
        staged = ", ".join(f"r.{column}" for column in table.content)
        cursor.execute(
            f"WITH {resolved}, up AS (INSERT INTO {table.name} ({columns})"
            f" SELECT {selected}, {int(batch_id)} FROM resolved WHERE patient_id IS NOT NULL"
            f" ON CONFLICT (resource_id) DO UPDATE SET {_update_set(table)} WHERE {_newer(table)}"
            " RETURNING (xmax = 0) AS inserted),"
            f" conflicts AS (SELECT r.line_number FROM resolved r JOIN {table.name} t ON t.resource_id = r.resource_id"
            " WHERE r.patient_id IS NOT NULL AND t.version_id = r.version_id AND t.last_updated = r.last_updated"
            f" AND ({stored}) IS DISTINCT FROM ({staged}))"
            " SELECT (SELECT count(*) FILTER (WHERE inserted) FROM up), (SELECT count(*) FILTER (WHERE NOT inserted)"
            " FROM up), (SELECT coalesce(array_agg(line_number), ARRAY[]::bigint[]) FROM resolved"
            " WHERE patient_id IS NULL), (SELECT coalesce(array_agg(line_number), ARRAY[]::bigint[]) FROM conflicts)"
        )
        written.inserted, written.updated, missing, conflicts = cursor.fetchone()
    written.dangling = sorted(missing)
    written.conflicts = sorted(conflicts)
    return written


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
    written = Written()
    pairs = list(zip(rows, lines, strict=True))
    if table.is_patient:
        owners = dict(
            _select_in(
                "SELECT resident_id, resource_id FROM datadomain_patient WHERE resident_id IN ({placeholders})",
                [row[1] for row, _ in pairs],
            )
        )
        written.duplicates = [line for row, line in pairs if owners.get(row[1], row[0]) != row[0]]
        pairs = [(row, line) for row, line in pairs if owners.get(row[1], row[0]) == row[0]]
    else:
        refs = sorted({row[1] for row, _ in pairs})
        patient_ids = dict(
            _select_in("SELECT resource_id, id FROM datadomain_patient WHERE resource_id IN ({placeholders})", refs)
        )
        written.dangling = [line for row, line in pairs if row[1] not in patient_ids]
        pairs = [((row[0], patient_ids[row[1]], *row[2:]), line) for row, line in pairs if row[1] in patient_ids]
    version_at = table.fields.index("version_id")
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
