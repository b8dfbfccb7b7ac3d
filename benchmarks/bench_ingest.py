"""FHIR ingest and bulk encryption of the data domain, on PostgreSQL.

1. Ingest: ``generate_synthetic`` writes ~1,000,000 resources (``--quick``: ~100,000), then the ingest of
   ``manage.py ingest_fhir`` (two parser processes) loads them into an empty database in a child process
   (fully validated, idempotent upserts), then loads them again (``--restart``: every line re-read,
   nothing changes), then loads two more such sets (other people, other ids) into the store that holds
   the first: the last one into a store of two million. Reported: resources/s, the child's peak RSS, and
   the CPU time per resource of the ingest processes (main and parsers, user + system) and of the
   PostgreSQL backend serving them, which depend much less than wall time on what else the machine runs.
2. Bulk encryption: ``precompute_features`` logic for the ``charlson-acci`` features (17 Charlson
   categories + ACCI age points) of N subjects under a fresh 3072-bit key, on every core.

The database is a scratch one created next to the database in ``BENCH_DATABASE_URL`` (or
``DATABASE_URL``), which must be PostgreSQL; it is dropped afterwards. Without PostgreSQL the
benchmark reports itself as skipped.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from benchmarks.report import Report
from benchmarks.support import drop_database, manage, postgres_url, scratch_database

ROOT = Path(__file__).resolve().parent.parent
RESOURCES_PER_PATIENT = 9.35  # what generate_synthetic produces on average (Patient + records)


def run(options: argparse.Namespace) -> Report:
    quick = bool(getattr(options, "quick", False))
    report = Report(
        name="bench_ingest",
        title="Data domain: FHIR ingest and bulk feature encryption (PostgreSQL, 2 cores)",
        columns=["phase", "items", "seconds", "items/s", "peak RSS MB", "CPU us/item: ingest + database"],
    )
    base_url = postgres_url()
    if not base_url:
        report.notes.append("skipped: set BENCH_DATABASE_URL or DATABASE_URL to a PostgreSQL server")
        return report
    target = 100_000 if quick else 1_000_000
    subjects = 100 if quick else 1000
    url = scratch_database(base_url, "bench_ingest")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
            folder = str(Path(scratch) / "first")
            env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
            manage(env, "migrate", "--noinput", "-v", "0")
            patients = round(target / RESOURCES_PER_PATIENT)
            started = time.perf_counter()
            manage(env, "generate_synthetic", "--patients", str(patients), "--seed", "2026", "--out", folder)
            lines = sum(1 for path in Path(folder).glob("*.ndjson") for _ in path.open("rb"))
            report.notes.append(
                f"input: {lines:,} resources of {patients:,} synthetic patients, generated in "
                f"{time.perf_counter() - started:.0f} s"
            )
            fresh = _ingest(report, env, folder, lines, "ingest into an empty store")
            _ingest(report, env, folder, lines, "re-ingest the same files (--restart)", restart=True)
            held = lines
            for seed in (2027, 2028):
                more = _more_people(env, patients, seed, Path(scratch) / f"seed-{seed}")
                count = sum(1 for path in Path(more).glob("*.ndjson") for _ in path.open("rb"))
                full = _ingest(report, env, more, count, f"ingest other people into a store of {held:,}")
                held += count
            report.add_target("ingest resources/s (1M resources, empty store)", fresh[0], 50_000, higher_is_better=True)
            report.add_target(
                f"ingest resources/s (1M resources, store of {held - count:,})", full[0], 50_000, higher_is_better=True
            )
            report.add_target("ingest peak RSS MB", fresh[1], 300, higher_is_better=False)
            _encryption(report, env, subjects)
    finally:
        drop_database(base_url, url)
    report.notes.append(
        "ingest: the ingest of `manage.py ingest_fhir` in a child process: orjson parsing, validation and COPY "
        "formatting in two worker processes, COPY + upsert by the main process; peak RSS is the largest child's "
        "maximum resident set; CPU us/resource: user + system time of the ingest processes (main and parsers) and "
        "of the PostgreSQL backend serving them (read from /proc, so the server must run on this machine)"
    )
    if quick:
        report.notes.append("quick run: 100,000 resources and 100 subjects; the targets are defined on the full run")
    return report


_INGEST = """
import os, resource, time
from django.db import connection
from datadomain.ingest.runner import Ingester

def cpu(pid):
    with open(f"/proc/{{pid}}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def own():
    return sum(getattr(resource.getrusage(who), part) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for part in ("ru_utime", "ru_stime"))

with connection.cursor() as cursor:
    cursor.execute("SELECT pg_backend_pid()")
    backend = cursor.fetchone()[0]
try:
    backend_before = cpu(backend)
except OSError:
    backend_before = None
own_before, started = own(), time.perf_counter()
Ingester(workers=2, restart={restart}).run([{folder!r}])
seconds, own_spent = time.perf_counter() - started, own() - own_before
backend_spent = cpu(backend) - backend_before if backend_before is not None else float("nan")
print("RESULT", seconds, own_spent, backend_spent)
"""


def _ingest(
    report: Report, env: dict[str, str], folder: str, lines: int, label: str, *, restart: bool = False
) -> tuple[float, float]:
    """One ingest run (two parser processes, as ``ingest_fhir`` on PostgreSQL) in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    output = manage(env, "shell", "-c", _INGEST.format(folder=folder, restart=restart))
    _, seconds, own, backend = next(line for line in output.splitlines() if line.startswith("RESULT")).split()
    # ru_maxrss of children is the largest child so far: ingest is the biggest child we start.
    peak_mb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    rate = lines / float(seconds)
    cpu = f"{1e6 * float(own) / lines:.1f} + {1e6 * float(backend) / lines:.1f}"
    report.rows.append([label, lines, float(seconds), rate, peak_mb, cpu])
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


def _encryption(report: Report, env: dict[str, str], subjects: int) -> None:
    script = f"""
import time
from datetime import date
from datadomain.management.commands.precompute_features import CHARLSON_ACCI
from datadomain.precompute import precompute
from securecompute.keys import generate_keypair
public_key, _ = generate_keypair(3072)
started = time.perf_counter()
result = precompute(public_key=public_key, feature_names=CHARLSON_ACCI, as_of=date(2026, 6, 30), processes=2,
                    limit={subjects})
print("RESULT", result.encrypted, time.perf_counter() - started, len(CHARLSON_ACCI))
"""
    output = manage(env, "shell", "-c", script)
    _, encrypted, seconds, features = next(line for line in output.splitlines() if line.startswith("RESULT")).split()
    rate = int(encrypted) / float(seconds)
    report.rows.append([f"encrypt charlson-acci vectors ({features} features, 3072 bits)", int(encrypted),
                        float(seconds), rate, "-", "-"])  # fmt: skip
    report.add_target(
        "bulk encryption subjects/s (charlson-acci, 3072 bits, 2 cores)", rate, 100, higher_is_better=True
    )
