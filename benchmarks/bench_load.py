"""Sustained load through the real stack: 20 requests/s for 5 minutes, then count what got lost.

Stack as in ``bench_pipeline``: gunicorn (2 processes x WEB_THREADS threads, 16 by default), Celery workers
over Redis (``domain``, ``scoring`` and ``webhooks`` in one worker with 2 processes, the custodian alone),
PostgreSQL, 3072-bit keys, the ``charlson-acci`` manual, vectors precomputed. An open-loop client sends
exactly RATE x DURATION requests on a fixed schedule (it does not slow down when the server does); each
is ``POST`` then ``GET ?wait=10``. After the last one, the benchmark waits up to 120 s for stragglers and then counts:

- lost: accepted (202) but not in a terminal state afterwards, or not in the database at all (must be 0);
- errors: a POST that was not 202, a connection error, or a request that ended other than ``completed``;
- latency: from sending the POST to reading the completed request (p50, p99), and of the POST alone.

Loopback only; bounded in count (6,000 requests) and time (``--quick``: 20 s). Needs PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench_pipeline import (
    TERMINAL,
    WAIT_SECONDS,
    WEB_THREADS,
    Client,
    _body,
    _environment,
    _percentile,
    _prepare,
    _stack,
    open_loop,
    read_when_done,
)
from benchmarks.report import Report
from benchmarks.support import drop_database, postgres_url, scratch_database

RATE = 20.0
DURATION = 300.0
DRAIN_SECONDS = 120.0


@dataclass
class Sent:
    request_id: str
    post_seconds: float
    total_seconds: float
    status: str
    error: str = ""


def run(options: argparse.Namespace) -> Report:
    quick = bool(getattr(options, "quick", False))
    duration = 20.0 if quick else DURATION
    report = Report(
        name="bench_load",
        title=f"Sustained load: {RATE:.0f} requests/s for {duration:.0f} s through the real stack (2 cores)",
        columns=["requests", "seconds", "accepted", "completed", "errors", "lost", "p50 ms", "p99 ms",
                 "POST p50 ms", "POST p99 ms"],
    )  # fmt: skip
    base_url = postgres_url()
    redis_url = os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL", "")
    if not base_url or not redis_url:
        report.notes.append("skipped: needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)")
        return report
    patients = 300
    url = scratch_database(base_url, "bench_load")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-load-") as folder:
            # Every secret production requires (the shared helper may predate some of them).
            env = _environment(url, redis_url, Path(folder))
            people = _prepare(env, Path(folder), patients)
            with _stack(env) as port:
                client = Client(port, (Path(folder) / "demo-api-key.txt").read_text().strip())
                _load(report, client, people, duration, url)
    finally:
        drop_database(base_url, url)
    report.notes.append(
        f"population: {patients} synthetic residents, charlson-acci vectors precomputed; gunicorn 2 processes x "
        f"{WEB_THREADS} threads; Celery: domain+scoring+webhooks worker with 2 processes, custodian worker with 1; "
        "all on 2 cores shared with the load generator"
    )
    return report


def _one(client: Client, person: dict[str, str], reference: str) -> Sent:
    started = time.perf_counter()
    try:
        status, body = client.call("POST", "/api/v1/underwriting-requests", _body(person, reference))
        posted = time.perf_counter() - started
        if status != 202:
            return Sent("", posted, posted, "http", f"POST {status}")
        request_id = str(body["id"])
        status, body = read_when_done(client, request_id, started + WAIT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - every failure is counted as an error, none may stop the run
        elapsed = time.perf_counter() - started
        return Sent("", elapsed, elapsed, "http", exc.__class__.__name__)
    total = time.perf_counter() - started
    return Sent(request_id, posted, total, str(body.get("status", "?")), "" if status == 200 else f"GET {status}")


def _load(report: Report, client: Client, people: list[dict[str, str]], duration: float, database_url: str) -> None:
    for index in range(10):  # warm-up: connections and the encryptor's tables in every process
        _one(client, people[index % len(people)], f"WARM-{index}")
    count = int(RATE * duration)
    sent, elapsed = open_loop(count, lambda index: _one(client, people[index % len(people)], f"LOAD-{index}"))
    accepted = [s.request_id for s in sent if s.request_id]
    terminal, completed_in_db = _drain(database_url, accepted)
    lost = len(accepted) - terminal
    completed = sum(1 for s in sent if s.status == "completed")
    errors = sum(1 for s in sent if s.status != "completed" or s.error)
    latencies = sorted(s.total_seconds * 1000 for s in sent if s.status == "completed")
    posts = sorted(s.post_seconds * 1000 for s in sent if s.request_id)
    report.rows.append([count, elapsed, len(accepted), completed, errors, lost, _percentile(latencies, 50),
                        _percentile(latencies, 99), _percentile(posts, 50), _percentile(posts, 99)])  # fmt: skip
    report.add_target("lost requests", lost, 0, higher_is_better=False)
    report.add_target("errors", errors, 0, higher_is_better=False)
    kinds: dict[str, int] = {}
    for s in sent:
        if s.status != "completed" or s.error:
            kinds[s.error or s.status] = kinds.get(s.error or s.status, 0) + 1
    if kinds:
        report.notes.append("errors by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    report.notes.append(
        f"after the run (and up to {DRAIN_SECONDS:.0f} s of drain): {terminal} of {len(accepted)} accepted requests "
        f"terminal in the database, {completed_in_db} completed"
    )


def _drain(database_url: str, ids: list[str]) -> tuple[int, int]:
    """Wait up to DRAIN_SECONDS for every accepted request to be terminal; (terminal, completed) counts."""
    import psycopg2

    connection = psycopg2.connect(database_url)
    connection.autocommit = True
    deadline = time.monotonic() + DRAIN_SECONDS
    terminal = completed = 0
    try:
        while True:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FILTER (WHERE status IN %s), count(*) FILTER (WHERE status = 'completed') "
                    "FROM underwriting_underwritingrequest WHERE id::text = ANY(%s)",
                    (TERMINAL, ids),
                )
                terminal, completed = (int(value) for value in cursor.fetchone())
            if terminal >= len(ids) or time.monotonic() > deadline:
                return terminal, completed
            time.sleep(1)
    finally:
        connection.close()
