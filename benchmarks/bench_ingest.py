"""FHIR ingest and bulk encryption of the data domain, on PostgreSQL.

1. Ingest: ``generate_synthetic`` writes ~1,000,000 resources (``--quick``: ~100,000), then
   ``manage.py ingest_fhir`` loads them into an empty database in a child process (fully validated,
   idempotent upserts), then loads them again (``--restart``: every line re-read, nothing changes).
   Reported: resources/s and the child's peak RSS.
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
        columns=["phase", "items", "seconds", "items/s", "peak RSS MB"],
    )
    base_url = postgres_url()
    if not base_url:
        report.notes.append("skipped: set BENCH_DATABASE_URL or DATABASE_URL to a PostgreSQL server")
        return report
    target = 100_000 if quick else 1_000_000
    subjects = 100 if quick else 1000
    url = scratch_database(base_url, "bench_ingest")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as folder:
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
            _ingest(report, env, folder, lines, "re-ingest the same files (--restart)", "--restart")
            report.add_target("ingest resources/s (1M resources, empty store)", fresh[0], 50_000, higher_is_better=True)
            report.add_target("ingest peak RSS MB", fresh[1], 300, higher_is_better=False)
            _encryption(report, env, subjects)
    finally:
        drop_database(base_url, url)
    report.notes.append(
        "ingest: `manage.py ingest_fhir` in a child process: orjson parsing, validation and COPY formatting in two "
        "worker processes, COPY + upsert by the main process; peak RSS is the largest child's maximum resident set"
    )
    if quick:
        report.notes.append("quick run: 100,000 resources and 100 subjects; the targets are defined on the full run")
    return report


def _ingest(
    report: Report, env: dict[str, str], folder: str, lines: int, label: str, *extra: str
) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    manage(env, "ingest_fhir", folder, "--no-progress", *extra)
    seconds = time.perf_counter() - started
    # ru_maxrss of children is the largest child so far: ingest is the biggest child we start.
    peak_mb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    rate = lines / seconds
    report.rows.append([label, lines, seconds, rate, peak_mb])
    return rate, peak_mb


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
                        float(seconds), rate, "-"])  # fmt: skip
    report.add_target(
        "bulk encryption subjects/s (charlson-acci, 3072 bits, 2 cores)", rate, 100, higher_is_better=True
    )
