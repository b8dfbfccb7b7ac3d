"""FHIR ingest into a store as it grows, bulk encryption, and storage per unit, on PostgreSQL.

1. Ingest: ``generate_synthetic`` writes ~1,000,000 resources (``--quick``: ~100,000), then the ingest of
   ``manage.py ingest_fhir`` (two parser processes) loads them into an empty database in a child process
   (fully validated, idempotent upserts), then loads them again (``--restart``: every line re-read,
   nothing changes).
2. Ingest as the store grows: for each store size N (``BENCH_INGEST_STORE_MILLIONS``, millions of
   resources, default ``1,5,10``; ``--quick``: ``0.1,0.3,0.5``) the store is first filled to N with SQL
   copies of the first population (``benchmarks.store_fill``: ``INSERT ... SELECT`` with the indexes in
   place, distinct ids, the generator's own code, date and per-person distributions, then ``VACUUM
   ANALYZE`` and a checkpoint; its docstring says why that stands for a real store and what it leaves
   out), then another generated population of the same size (other people, other ids) is ingested into
   it and measured. Copying is used because it fills ten million resources in minutes, where generating
   and ingesting them would take longer than the whole measurement.
   Every ingest row reports resources/s, the child's peak RSS, the CPU time per resource of the main
   ingest process, of the two parser processes together (user + system) and of the PostgreSQL backend
   serving them (which depend
   much less than wall time on what else the machine runs), and the WAL written per resource (the
   server's WAL position, so other databases' writes on the same server count too).
3. Bulk encryption: ``precompute_features`` logic for the ``charlson-acci`` features (17 Charlson
   categories + ACCI age points) of N subjects under a fresh 3072-bit key, on two processes, with its
   CPU time per subject; then for the union of the features of every built-in manual, merged into the
   same vectors.
4. Storage (a second table): bytes per subject of the encrypted vectors (table, TOAST and indexes) for
   both feature sets, of ``FeatureValues``, and bytes per resource of the identity and record tables with
   their indexes, in the largest store.

The database is a scratch one created next to the database in ``BENCH_DATABASE_URL`` (or
``DATABASE_URL``), which must be PostgreSQL; it is dropped afterwards. Without PostgreSQL the
benchmark reports itself as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.report import Report
from benchmarks.store_fill import (
    PATIENT,
    RECORDS,
    RESOURCE_TABLES,
    fill_to,
    relation_bytes,
    wal_bytes_since,
    wal_position,
)
from benchmarks.support import drop_database, manage, postgres_url, scratch_database

ROOT = Path(__file__).resolve().parent.parent
RESOURCES_PER_PATIENT = 9.35  # what generate_synthetic produces on average (Patient + records)
VECTORS = "datadomain_encryptedfeaturevector"
VALUES = "datadomain_featurevalues"


def store_steps(quick: bool) -> list[int]:
    """The store sizes (resources) to measure an ingest into, from BENCH_INGEST_STORE_MILLIONS."""
    given = os.environ.get("BENCH_INGEST_STORE_MILLIONS", "") or ("0.1,0.3,0.5" if quick else "1,5,10")
    return sorted({round(float(part) * 1_000_000) for part in given.split(",") if part.strip()})


def run(options: argparse.Namespace) -> list[Report]:
    quick = bool(getattr(options, "quick", False))
    report = Report(
        name="bench_ingest",
        title="Data domain: FHIR ingest as the store grows, and bulk feature encryption (PostgreSQL, 2 cores)",
        columns=[
            "phase", "items", "seconds", "items/s", "peak RSS MB", "CPU us/item: main + parsers + database",
            "WAL bytes/item",
        ],
    )  # fmt: skip
    storage = Report(
        name="bench_ingest_storage",
        title="Data domain: storage per subject and per resource (PostgreSQL, with indexes and TOAST)",
        columns=["what", "rows", "MB", "bytes per row", "per", "bytes per unit"],
    )
    base_url = postgres_url()
    if not base_url:
        report.notes.append("skipped: set BENCH_DATABASE_URL or DATABASE_URL to a PostgreSQL server")
        return [report]
    target = 100_000 if quick else 1_000_000
    subjects = 100 if quick else 1000
    url = scratch_database(base_url, "bench_ingest")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
            env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
            manage(env, "migrate", "--noinput", "-v", "0")
            patients = round(target / RESOURCES_PER_PATIENT)
            fresh = _first_population(report, env, base_url, patients, Path(scratch) / "first")
            _growing_store(report, env, base_url, url, patients, Path(scratch), store_steps(quick))
            report.add_target("ingest resources/s (1M resources, empty store)", fresh[0], 50_000, higher_is_better=True)
            report.add_target("ingest peak RSS MB", fresh[1], 300, higher_is_better=False)
            _storage(storage, url)
            _encryption(report, storage, env, subjects)
    finally:
        drop_database(base_url, url)
    report.notes.append(
        "ingest: the ingest of `manage.py ingest_fhir` in a child process: orjson parsing, validation and COPY "
        "formatting in two worker processes, COPY + upsert by the main process; peak RSS is the largest child's "
        "maximum resident set; CPU us/resource: user + system time of the main ingest process, of the two parsers "
        "together and of the PostgreSQL backend serving them (read from /proc, so the server must run on this "
        "machine); "
        "WAL bytes: the server's WAL position before and after, other databases' writes included"
    )
    report.notes.append(
        "store fill: SQL copies of the first population with new ids (benchmarks.store_fill), indexes in place, "
        "then VACUUM ANALYZE and CHECKPOINT; its seconds are not an ingest figure"
    )
    if quick:
        report.notes.append("quick run: 100,000 resources and 100 subjects; the targets are defined on the full run")
    return [report, storage]


def _first_population(
    report: Report, env: dict[str, str], base_url: str, patients: int, folder: Path
) -> tuple[float, float]:
    started = time.perf_counter()
    manage(env, "generate_synthetic", "--patients", str(patients), "--seed", "2026", "--out", str(folder))
    lines = _lines(folder)
    report.notes.append(
        f"input: {lines:,} resources of {patients:,} synthetic patients, generated in "
        f"{time.perf_counter() - started:.0f} s"
    )
    fresh = _ingest(report, env, base_url, str(folder), lines, "ingest into an empty store")
    _ingest(report, env, base_url, str(folder), lines, "re-ingest the same files (--restart)", restart=True)
    return fresh


def _growing_store(
    report: Report, env: dict[str, str], base_url: str, url: str, patients: int, scratch: Path, steps: list[int]
) -> None:
    """For each store size: fill the store to it, then ingest and measure another population."""
    for number, size in enumerate(steps, start=1):
        filled = fill_to(url, size)
        if filled.resources_after > filled.resources_before:
            added = filled.resources_after - filled.resources_before
            report.rows.append([
                f"fill the store to {filled.resources_after:,} (SQL copies; not an ingest figure)",
                added, filled.seconds, added / filled.seconds, "-", "-", "-",
            ])  # fmt: skip
        seed = 2026 + number
        more = _more_people(env, patients, seed, scratch / f"seed-{seed}")
        count = _lines(Path(more))
        label = f"ingest other people into a store of {filled.resources_after:,}"
        rate, _ = _ingest(report, env, base_url, more, count, label)
        shutil.rmtree(more)
        report.add_target(
            f"ingest resources/s (1M resources, store of {filled.resources_after:,})", rate, 50_000,
            higher_is_better=True,
        )  # fmt: skip


def _lines(folder: Path) -> int:
    return sum(1 for path in folder.glob("*.ndjson") for _ in path.open("rb"))


_INGEST = """
import resource, time
from django.db import connection
from benchmarks.support import cpu_seconds
from datadomain.ingest.runner import Ingester

def own(who):
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime

with connection.cursor() as cursor:
    cursor.execute("SELECT pg_backend_pid()")
    backend = cursor.fetchone()[0]
backend_before = cpu_seconds({{backend}}).get(backend)  # None: the server runs on another machine
# The parser processes are this process's children, reaped when the run ends.
main_before, parsers_before = own(resource.RUSAGE_SELF), own(resource.RUSAGE_CHILDREN)
started = time.perf_counter()
Ingester(workers=2, restart={restart}).run([{folder!r}])
seconds = time.perf_counter() - started
main_spent, parsers_spent = own(resource.RUSAGE_SELF) - main_before, own(resource.RUSAGE_CHILDREN) - parsers_before
backend_spent = cpu_seconds({{backend}})[backend] - backend_before if backend_before is not None else float("nan")
print("RESULT", seconds, main_spent, parsers_spent, backend_spent)
"""


def _ingest(
    report: Report, env: dict[str, str], base_url: str, folder: str, lines: int, label: str, *, restart: bool = False
) -> tuple[float, float]:
    """One ingest run (two parser processes, as ``ingest_fhir`` on PostgreSQL) in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    wal = wal_position(base_url)
    output = manage(env, "shell", "-c", _INGEST.format(folder=folder, restart=restart))
    wal_bytes = wal_bytes_since(base_url, wal)
    _, seconds, main, parsers, backend = next(line for line in output.splitlines() if line.startswith("RESULT")).split()
    # ru_maxrss of children is the largest child so far: ingest is the biggest child we start.
    peak_mb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    rate = lines / float(seconds)
    cpu = " + ".join(f"{1e6 * float(spent) / lines:.1f}" for spent in (main, parsers, backend))
    report.rows.append([label, lines, float(seconds), rate, peak_mb, cpu, round(wal_bytes / lines)])
    return rate, peak_mb


def _more_people(env: dict[str, str], patients: int, seed: int, folder: Path) -> str:
    """Another synthetic population, its resource ids prefixed so that none is one of the first set's."""
    raw = folder.with_name(folder.name + "-raw")
    manage(env, "generate_synthetic", "--patients", str(patients), "--seed", str(seed), "--out", str(raw))
    folder.mkdir()
    prefix = f"s{seed}-".encode()
    for path in raw.glob("*.ndjson"):
        with path.open("rb") as source, (folder / path.name).open("wb") as out:
            for line in source:
                out.write(line.replace(b'"id":"', b'"id":"' + prefix, 1).replace(b'"Patient/', b'"Patient/' + prefix))
        path.unlink()
    raw.rmdir()
    return str(folder)


# Both feature sets are encrypted under one key, each as of its own date, so that the second makes new rows
# instead of replacing the first's: the tables only grow, and each set's storage is the growth it caused
# (an update would leave dead row versions that a concurrent ANALYZE's snapshot can keep in the files).
_ENCRYPT = """
import json, os, resource, time
from datetime import date
from pathlib import Path
import yaml
from django.db import connection
from datadomain.management.commands.precompute_features import CHARLSON_ACCI
from datadomain.precompute import precompute
from securecompute.keys import generate_keypair

def own():
    return sum(getattr(resource.getrusage(who), part) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for part in ("ru_utime", "ru_stime"))

def sizes(day):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM {vectors} WHERE as_of = %s), pg_total_relation_size('{vectors}'),"
            " (SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = '{vectors}'),"
            " pg_indexes_size('{vectors}'), (SELECT coalesce(avg(length(ciphertexts)), 0) FROM {vectors}"
            " WHERE as_of = %s), (SELECT count(*) FROM {values} WHERE as_of = %s), pg_total_relation_size('{values}')",
            [day, day, day],
        )
        return dict(zip(("vectors", "vector_bytes", "toast_bytes", "index_bytes", "blob_bytes", "values",
                         "value_bytes"), map(float, cursor.fetchone())))

manuals = sorted(Path("underwriting/manuals").glob("*.yaml"))
union = sorted({{item["name"] for path in manuals for item in yaml.safe_load(path.read_text())["features"]}})
public_key, _ = generate_keypair(3072)
before = sizes(date(2000, 1, 1))
for label, names, day in (("charlson-acci", CHARLSON_ACCI, date(2026, 6, 30)),
                          ("all built-in manuals", union, date(2026, 7, 1))):
    connection.close()
    own_before, started = own(), time.perf_counter()
    result = precompute(public_key=public_key, feature_names=names, as_of=day, processes=2, limit={subjects})
    seconds, own_spent = time.perf_counter() - started, own() - own_before
    after = sizes(day)
    grown = {{name: after[name] - before[name] for name in after if name.endswith("_bytes") and name != "blob_bytes"}}
    print("RESULT", json.dumps({{"label": label, "features": len(names), "encrypted": result.encrypted,
                                "seconds": seconds, "cpu": own_spent, **after, **grown}}))
    before = after
"""


def _encryption(report: Report, storage: Report, env: dict[str, str], subjects: int) -> None:
    output = manage(env, "shell", "-c", _ENCRYPT.format(subjects=subjects, vectors=VECTORS, values=VALUES))
    for line in output.splitlines():
        if line.startswith("RESULT "):
            _encryption_rows(report, storage, json.loads(line.removeprefix("RESULT ")))
    storage.notes.append(
        "vectors: one row per subject, key and as-of date holding the precomputed features (ciphertexts as "
        "fixed-width bytes, 768 bytes each at 3072 bits); each feature set is computed as of its own date, so "
        "its bytes are the growth of the tables (heap, TOAST, indexes) that its rows caused. The encryption "
        "rows' CPU is the precompute processes' (main and the two encrypting workers), the database's not included"
    )


def _encryption_rows(report: Report, storage: Report, run: dict[str, Any]) -> None:
    encrypted, label, features = int(run["encrypted"]), run["label"], run["features"]
    rate = encrypted / run["seconds"]
    report.rows.append([
        f"encrypt {label} vectors ({features} features, 3072 bits, 2 processes)", encrypted, run["seconds"],
        rate, "-", f"{1e6 * run['cpu'] / max(encrypted, 1):,.0f} (precompute)", "-",
    ])  # fmt: skip
    if label == "charlson-acci":
        report.add_target(
            "bulk encryption subjects/s (charlson-acci, 3072 bits, 2 cores)", rate, 100, higher_is_better=True
        )
    for table, rows, size in (
        (VECTORS, run["vectors"], run["vector_bytes"]),
        (VALUES, run["values"], run["value_bytes"]),
    ):
        per = size / max(rows, 1)
        storage.rows.append([f"{table} ({label}: {features} features)", int(rows), size / 1e6, per, "subject", per])
    vectors = max(run["vectors"], 1)
    heap = run["vector_bytes"] - run["toast_bytes"] - run["index_bytes"]
    storage.notes.append(
        f"{label} vectors per subject: {run['blob_bytes']:,.0f} bytes of ciphertexts; {heap / vectors:,.0f} heap "
        f"(with the TOAST table's own index), {run['toast_bytes'] / vectors:,.0f} TOAST, "
        f"{run['index_bytes'] / vectors:,.0f} indexes"
    )


def _storage(storage: Report, url: str) -> None:
    """Rows, total size and bytes per resource of the identity and record tables, in the store as it is now."""
    sizes = relation_bytes(url, (PATIENT, *RESOURCE_TABLES, "datadomain_patientcontact"))
    resources = sum(sizes[table][0] for table in RESOURCE_TABLES)
    for table, (rows, size) in sizes.items():
        storage.rows.append([table, rows, size / 1e6, size / max(rows, 1), "resource", size / max(resources, 1)])
    total = sum(size for _, size in sizes.values())
    storage.rows.append(["identity and record tables together", resources, total / 1e6, "-", "resource",
                         total / max(resources, 1)])  # fmt: skip
    records = sum(sizes[table][0] for table in RECORDS)
    patients = sizes[PATIENT][0]
    storage.notes.append(
        f"records: the store after the last ingest, {resources:,} resources ({records:,} records) of "
        f"{patients:,} subjects, {records / max(patients, 1):.1f} records per subject; bytes per resource "
        "divide each table by all resources"
    )
