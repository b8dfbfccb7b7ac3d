"""Grow a scratch data-domain store to a given number of resources quickly, for ``bench_ingest``.

Generating and ingesting ten million resources through ``ingest_fhir`` would take longer than the
measurement it prepares, so the store is grown in SQL instead: each *copy* takes the population that
the benchmark ingested first (the ``generate_synthetic --seed 2026`` people, whose resource ids carry no
prefix) and inserts it again with ``INSERT ... SELECT`` into the same tables, with the indexes in place:

- every FHIR id gets the prefix ``f<copy>-`` (distinct ids; like one hospital's sequential ids, each
  copy's keys lie together in the primary-key index, as a real source's do);
- patient rows get new ids above every existing one (what the identity column would hand out), and the
  records of a copy point at their copy's patients, so the composite ``(patient_id, ...)`` indexes
  grow as they do when people are ingested;
- resident IDs and subject keys become md5-derived strings, spread over the whole unique index like
  real ones (and never a valid resident ID, so a measured population cannot link to a copied person);
- every other column (codes, dates, values, statuses, records per person) is copied as generated, so
  the code, date and per-person distributions are exactly the generator's.

The last copy takes only the first part of the population (by patient id) needed to reach the target.
Then ``VACUUM ANALYZE`` and a ``CHECKPOINT``: a store that has been at rest, its statistics current and
its dirty pages written, so the measured ingest pays for its own writes only. The tables, their indexes
and the index probes of the ingest's upserts therefore have the size and shape of a store that holds
that many resources; what the copies do not reproduce is a store's history (dead tuples of earlier
updates, index pages split by updates to old people).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from benchmarks.support import admin_connection

PATIENT = "datadomain_patient"
SOURCE = "datadomain_patientsource"
RECORDS = ("datadomain_condition", "datadomain_encounter", "datadomain_observation")
# The tables whose rows are resources: one PatientSource row per Patient line, one row per record line.
RESOURCE_TABLES = (SOURCE, *RECORDS)
# The first population ingested: its ids carry neither a copy's "f<n>-" nor a later population's prefix.
ORIGINAL = "pat-%"


@dataclass
class Filled:
    resources_before: int
    resources_after: int
    seconds: float
    copies: int


def resources(cursor: Any) -> int:
    cursor.execute("SELECT " + " + ".join(f"(SELECT count(*) FROM {table})" for table in RESOURCE_TABLES))
    return int(cursor.fetchone()[0])


def fill_to(url: str, target: int) -> Filled:
    """Insert copies of the first population until the store holds at least ``target`` resources."""
    import psycopg2

    connection = psycopg2.connect(url)
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
            before = held = resources(cursor)
            low, high, per_copy = _original(cursor)
            copy = _copies_made(cursor)
            while held < target and per_copy:
                copy += 1
                fraction = min(1.0, (target - held) / per_copy)
                cutoff = low + max(1, round(fraction * (high - low + 1))) - 1
                held += _copy(cursor, copy, low, cutoff)
                connection.commit()
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{PATIENT}', 'id'), (SELECT max(id) FROM {PATIENT}))")
            connection.commit()
        if held > before:
            _settle(url)
    finally:
        connection.close()
    return Filled(before, held, time.perf_counter() - started, copy)


def _original(cursor: Any) -> tuple[int, int, int]:
    """The patient id range of the first population and how many resources it holds."""
    cursor.execute(f"SELECT min(id), max(id) FROM {PATIENT} WHERE resource_id LIKE %s", [ORIGINAL])
    low, high = cursor.fetchone()
    if low is None:
        return 0, 0, 0
    counted = " + ".join(
        f"(SELECT count(*) FROM {table} WHERE patient_id BETWEEN {int(low)} AND {int(high)})"
        for table in RESOURCE_TABLES
    )
    cursor.execute(f"SELECT {counted}")
    return int(low), int(high), int(cursor.fetchone()[0])


def _copies_made(cursor: Any) -> int:
    cursor.execute(
        f"SELECT coalesce(max(substring(resource_id FROM '^f([0-9]+)-')::int), 0) FROM {PATIENT}"
        " WHERE resource_id ~ '^f[0-9]+-'"
    )
    return int(cursor.fetchone()[0])


def _copy(cursor: Any, copy: int, low: int, cutoff: int) -> int:
    """Copy the first population's patients ``low``..``cutoff`` and their records once; resources added."""
    cursor.execute(f"SELECT max(id) FROM {PATIENT}")
    offset = int(cursor.fetchone()[0]) - low + 1
    prefix = f"f{copy}-"
    special = {
        "id": f"id + {offset}",
        "patient_id": f"patient_id + {offset}",
        "resource_id": f"'{prefix}' || resource_id",
        "resident_id": f"substr(md5('{prefix}' || resident_id), 1, 18)",
        "subject_key": f"md5('{prefix}a' || subject_key) || md5('{prefix}b' || subject_key)",
    }
    added = 0
    for table in (PATIENT, *RESOURCE_TABLES):
        columns = _columns(cursor, table)
        selected = ", ".join(special.get(column, column) for column in columns)
        owner = "id" if table == PATIENT else "patient_id"
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT {selected} FROM {table}"
            f" WHERE {owner} BETWEEN %s AND %s",
            [low, cutoff],
        )
        added += cursor.rowcount if table != PATIENT else 0
    return added


def _columns(cursor: Any, table: str) -> list[str]:
    cursor.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = %s ORDER BY ordinal_position",
        [table],
    )
    return [name for (name,) in cursor.fetchall()]


def _settle(url: str) -> None:
    """VACUUM ANALYZE the grown tables and write their pages out, as a store at rest would be."""
    import psycopg2

    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {', '.join((PATIENT, *RESOURCE_TABLES))}")
            cursor.execute("CHECKPOINT")
    finally:
        connection.close()


def relation_bytes(url: str, tables: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """Each table's rows and its total size on disk (heap, TOAST and indexes)."""
    import psycopg2

    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            found = {}
            for table in tables:
                cursor.execute(f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}")
                rows, size = cursor.fetchone()
                found[table] = (int(rows), int(size))
            return found
    finally:
        connection.close()


def wal_position(base_url: str) -> str:
    connection = admin_connection(base_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()::text")
            return str(cursor.fetchone()[0])
    finally:
        connection.close()


def wal_bytes_since(base_url: str, start: str) -> int:
    connection = admin_connection(base_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", [start])
            return int(cursor.fetchone()[0])
    finally:
        connection.close()
