"""Submit-to-completed latency and batch throughput of the whole product path, on real processes.

Stack: gunicorn (the API), Celery workers over Redis (``domain``/``scoring``/``webhooks`` in one worker
with 2 processes, the custodian in its own), PostgreSQL, a 3072-bit custodian key, the ``charlson-acci``
manual, synthetic residents whose encrypted vectors were precomputed in bulk (the steady state).

1. One at a time: 100 requests (``--quick``: 20), each sent when the previous one completed; the
   latency floor of an idle stack.
2. Steady load: an open-loop client sends 20 requests/s for 60 s (``--quick``: 10 s). Each request is
   ``POST`` then ``GET ?wait=10``; latency is from sending the POST to reading the completed request.
3. Batch: 10,000 requests (``--quick``: 1,000) sent as an insurer's system sends a batch, 500 per
   ``POST /api/v1/underwriting-requests/batch`` from 4 client threads, then the time until the last one
   is completed; throughput is requests / that time.

Everything runs on loopback and stops by itself. Needs PostgreSQL (BENCH_DATABASE_URL or DATABASE_URL)
and Redis (BENCH_REDIS_URL or REDIS_URL); without them the benchmark reports itself as skipped.
BENCH_LOG_DIR, when set, receives the logs of the API and the workers; BENCH_PHASES=sequential,steady runs
only the phases named.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import math
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.report import Report
from benchmarks.support import (
    ROOT,
    CpuMeter,
    drop_database,
    manage,
    postgres_backends,
    postgres_url,
    process_tree,
    scratch_database,
)

RATE = 20.0
# gunicorn threads per process, as in docker/gunicorn.conf.py (WEB_THREADS): each `?wait` holds one.
WEB_THREADS = os.environ.get("WEB_THREADS", "16")
# BENCH_PHASES=sequential,steady runs only those phases (default: all three).
PHASES = set(os.environ.get("BENCH_PHASES", "sequential,steady,batch").split(","))
# The longest a request may take from POST to completed before it counts as not completed (the API's
# longest ``?wait``).
WAIT_SECONDS = 10.0
BATCH_CALL_ITEMS = 500  # requests per POST /api/v1/underwriting-requests/batch (API_BATCH_MAX_ITEMS)
T = TypeVar("T")
TERMINAL = ("completed", "rejected", "unrated", "failed")


@dataclass
class Outcome:
    latency: float
    status: str
    error: str = ""


@dataclass
class Client:
    """One keep-alive HTTP connection per thread to the API on loopback."""

    port: int
    key: str
    local: threading.local = field(default_factory=threading.local)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        status, payload, _ = self.request(method, path, body)
        return status, payload

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any], http.client.HTTPMessage]:
        """Status, JSON body and headers of one call."""
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        if body is not None:
            headers["Idempotency-Key"] = str(uuid.uuid4())  # the same on a retry: the server answers once
        data = json.dumps(body) if body is not None else None
        for attempt in (1, 2):
            connection = getattr(self.local, "connection", None)
            reused = connection is not None
            if connection is None:
                connection = self.local.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                self.local.connection = None
                if reused and attempt == 1:
                    continue  # the server closed an idle keep-alive connection: reconnect, as HTTP clients do
                raise
            except (OSError, http.client.HTTPException):
                self.local.connection = None
                raise
            return response.status, json.loads(payload) if payload else {}, response.headers
        raise AssertionError("unreachable")


def run(options: argparse.Namespace) -> Report:
    quick = bool(getattr(options, "quick", False))
    report = Report(
        name="bench_pipeline",
        title="Underwriting pipeline: submit-to-completed latency and batch throughput (3072-bit keys, 2 cores)",
        columns=["phase", "requests", "seconds", "requests/s", "p50 ms", "p99 ms", "errors", "lost"],
    )
    base_url = postgres_url()
    redis_url = os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL", "")
    if not base_url or not redis_url:
        report.notes.append("skipped: needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)")
        return report
    duration = 10.0 if quick else 60.0
    batch = 1000 if quick else 10_000
    patients = 500 if quick else 2000
    url = scratch_database(base_url, "bench_pipeline")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as folder:
            env = _environment(url, redis_url, Path(folder))
            people = _prepare(env, Path(folder), patients)
            pids: dict[str, int] = {}
            with _stack(env, pids) as port:
                client = Client(port, (Path(folder) / "demo-api-key.txt").read_text().strip())
                if "sequential" in PHASES:
                    _sequential(report, client, people, 20 if quick else 100)
                if "steady" in PHASES:
                    _steady(report, client, people, duration, pids)
                    report.notes.append(_stage_times(url, "STEADY-%"))
                if "batch" in PHASES:
                    _batch(report, client, people, batch, url, pids)
    finally:
        drop_database(base_url, url)
    report.notes.append(
        f"population: {patients:,} synthetic residents, charlson-acci vectors precomputed; gunicorn 2 processes x "
        f"{WEB_THREADS} threads; Celery: domain+scoring+webhooks worker with 2 processes, custodian worker with 1; "
        "all on 2 cores"
    )
    if quick:
        report.notes.append(
            "quick run: 10 s of steady load and a 1,000-request batch; targets are defined on the full run"
        )
    return report


def _environment(database_url: str, redis_url: str, folder: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DEBUG": "0",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": secrets.token_urlsafe(40),
        "SUBJECT_PEPPER": secrets.token_urlsafe(20),
        "CUSTODIAN_KEK": secrets.token_hex(32),
        "AUDIT_KEY": secrets.token_urlsafe(32),
        "CUSTODIAN_KEY_DIR": str(folder / "keys"),
        "VAR_DIR": str(folder),
        "PAILLIER_KEY_BITS": "3072",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DEMO_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        # The benchmarks request the same synthetic residents many times over: lift every per-subject and
        # per-client limit, or the runs would measure refusals (rate_limited, 429) instead of the pipeline.
        "UNDERWRITING_RATE_LIMIT_COUNT": "1000000",
        "UNDERWRITING_SUBJECT_LIMIT_COUNT": "1000000",
        "UNDERWRITING_SUBJECT_LIMIT_YEAR": "1000000",
        "API_THROTTLE_RATE": "1000000/min",
        "API_BATCH_THROTTLE_RATE": "1000000/min",
        "API_INSURER_THROTTLE_RATE": "1000000/min",
        "API_INSURER_BATCH_THROTTLE_RATE": "1000000/min",
        # The one API key stands for many insurers' systems: a single insurer's cap on waiting calls would
        # turn waits into polls and measure that cap rather than the pipeline. The per-process cap stays.
        "API_WAIT_MAX_PER_KEY": "1000000",
        "AUDIT_ANCHOR_SIGNING_KEY": secrets.token_hex(32),
        "LOG_LEVEL": "WARNING",
        "CONN_MAX_AGE": "600",
    }


def _prepare(
    env: dict[str, str], folder: Path, patients: int, *, precompute: int | None = None
) -> list[dict[str, str]]:
    """Migrate, seed ``patients`` synthetic residents and precompute their encrypted vectors (only the first
    ``precompute`` subjects by id when given); the residents as the API takes them."""
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "seed_demo", "-v", "0", "--patients", str(patients))
    # The demo requests were queued while no worker ran: start from empty queues.
    subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", "purge", "-f", "-Q", "domain,scoring,custodian,webhooks"],
        cwd=ROOT, env=env, capture_output=True, check=False,
    )  # fmt: skip
    fhir = folder / "demo-fhir"
    manage(env, "precompute_features", "--no-progress", *([] if precompute is None else ["--limit", str(precompute)]))
    people = []
    for line in (fhir / "Patient.ndjson").read_text(encoding="utf-8").splitlines():
        patient = json.loads(line)
        people.append({"resident_id": patient["identifier"][0]["value"], "name": patient["name"][0]["text"]})
    return people


@dataclass(frozen=True)
class Service:
    """One process of a benchmarked stack: its command line and how its environment differs from the
    shared one (a value of None removes the variable, as for a secret another zone's container never gets)."""

    command: list[str]
    env: dict[str, str | None] = field(default_factory=dict)

    def environment(self, shared: dict[str, str]) -> dict[str, str]:
        merged = dict(shared)
        for name, value in self.env.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        return merged


def merged_services(port: int) -> dict[str, Service]:
    """This benchmark's stack: the API, one worker for ``domain``, ``scoring`` and ``webhooks`` (2 processes)
    and the custodian alone (1 process), all connecting as the benchmark's own database user."""
    return {
        "web": Service([sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
                        "--workers", "2", "--threads", WEB_THREADS, "--worker-class", "gthread",
                        "--log-level", "warning"]),
        "main": Service([sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "domain,scoring,webhooks",
                         "-c", "2", "-n", "main@bench", "--without-gossip", "--without-mingle", "--without-heartbeat",
                         "-l", "WARNING"]),
        "custodian": Service([sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "custodian",
                              "--include", "datadomain.custodian", "-c", "1", "-n", "custodian@bench",
                              "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]),
    }  # fmt: skip


@contextmanager
def _stack(
    env: dict[str, str],
    pids: dict[str, int] | None = None,
    services: Callable[[int], dict[str, Service]] = merged_services,
    name: str = "",
) -> Iterator[int]:
    """The processes ``services(port)`` names (by default this benchmark's API, workers and custodian);
    yields the API's port. ``pids`` receives each one's main process id; ``name`` tells the logs of several
    stacks in one run apart."""
    port = _free_port()
    logs = Path(env["VAR_DIR"]) / (f"logs-{name}" if name else "logs")
    logs.mkdir()
    processes = []
    try:
        for service_name, service in services(port).items():
            with (logs / f"{service_name}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(
                        service.command, cwd=ROOT, env=service.environment(env), stdout=log, stderr=subprocess.STDOUT
                    )
                )
                if pids is not None:
                    pids[service_name] = processes[-1].pid
        _wait_ready(port, processes, logs)
        yield port
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if os.environ.get("BENCH_LOG_DIR"):  # keep the stack's logs for a look afterwards
            shutil.copytree(logs, Path(os.environ["BENCH_LOG_DIR"]) / name, dirs_exist_ok=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(port: int, processes: list[subprocess.Popen[bytes]], logs: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            tails = "\n".join(path.read_text(errors="replace")[-1500:] for path in logs.iterdir())
            raise RuntimeError(f"a benchmark process exited early:\n{tails}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the API did not become ready")


def _one(client: Client, person: dict[str, str], reference: str) -> Outcome:
    started = time.perf_counter()
    try:
        status, body = client.call("POST", "/api/v1/underwriting-requests", _body(person, reference))
        if status != 202:
            return Outcome(time.perf_counter() - started, "http", f"POST {status}")
        status, body = read_when_done(client, str(body["id"]), started + WAIT_SECONDS)
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(time.perf_counter() - started, "http", exc.__class__.__name__)
    return Outcome(time.perf_counter() - started, body.get("status", "?"), "" if status == 200 else f"GET {status}")


def read_when_done(client: Client, request_id: str, deadline: float) -> tuple[int, dict[str, Any]]:
    """``GET .../{id}?wait=N`` until the request is terminal or ``deadline`` (perf_counter) has passed. A
    wait the server skipped because too many calls were waiting already (``X-Wait: skipped``) is asked
    again after its ``Retry-After``, as an insurer's client does: the pause counts in the latency."""
    while True:
        wait = max(1, math.ceil(deadline - time.perf_counter()))
        status, body, headers = client.request("GET", f"/api/v1/underwriting-requests/{request_id}?wait={wait}")
        if status != 200 or body.get("status") in TERMINAL or headers.get("X-Wait") != "skipped":
            return status, body
        pause = float(headers.get("Retry-After") or 1)
        if time.perf_counter() + pause >= deadline:
            return status, body
        time.sleep(pause)


def _body(person: dict[str, str], reference: str) -> dict[str, Any]:
    return {
        "reference": reference,
        "applicant": person,
        "manual": "charlson-acci",
        "consent": {
            "reference": f"C-{reference}",
            "signed_at": "2026-01-01T09:00:00+08:00",
            "scope": ["underwriting"],
            "artifact_sha256": "0" * 64,
        },
    }


def open_loop(count: int, send: Callable[[int], T], rate: float = RATE, threads: int = 64) -> tuple[list[T], float]:
    """``send(index)`` for index 0..count-1, started on an open-loop schedule of ``rate`` per second (a
    slow answer does not delay the next start while a thread is free); the results and the seconds taken."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        started = time.perf_counter()
        futures = []
        for index in range(count):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(send, index))
        results = [future.result() for future in futures]
    return results, time.perf_counter() - started


def cpu_meter(pids: dict[str, int]) -> CpuMeter:
    """CPU of the API, each worker (with their forked children), PostgreSQL and this client."""
    groups: dict[str, Callable[[], set[int]]] = {
        name: functools.partial(process_tree, pid) for name, pid in pids.items()
    }
    return CpuMeter({**groups, "postgres": postgres_backends, "client": lambda: {os.getpid()}})


def _sequential(report: Report, client: Client, people: list[dict[str, str]], count: int) -> None:
    """One request at a time on an idle stack: the latency floor, before any queueing."""
    for index in range(10):  # warm-up: connections, caches, the encryptor's tables in every process
        _one(client, people[index % len(people)], f"SEQ-WARM-{index}")
    started = time.perf_counter()
    outcomes = [_one(client, people[index % len(people)], f"SEQ-{index}") for index in range(count)]
    elapsed = time.perf_counter() - started
    latencies = sorted(o.latency * 1000 for o in outcomes if o.status == "completed")
    errors = sum(1 for o in outcomes if o.status != "completed")
    report.rows.append(
        ["one at a time", count, elapsed, count / elapsed, _percentile(latencies, 50), _percentile(latencies, 99),
         errors, 0]
    )  # fmt: skip


def _steady(
    report: Report, client: Client, people: list[dict[str, str]], duration: float, pids: dict[str, int]
) -> None:
    count = int(RATE * duration)
    meter = cpu_meter(pids)
    meter.start()
    outcomes, elapsed = open_loop(count, lambda index: _one(client, people[index % len(people)], f"STEADY-{index}"))
    meter.stop()
    report.notes.append(f"steady load, CPU ms per request: {meter.per_request_ms(count)}")
    latencies = sorted(o.latency * 1000 for o in outcomes if o.status == "completed")
    errors = sum(1 for o in outcomes if o.status != "completed")
    p50, p99 = _percentile(latencies, 50), _percentile(latencies, 99)
    report.rows.append(
        [f"steady {RATE:.0f} req/s for {duration:.0f} s", count, elapsed, count / elapsed, p50, p99, errors, 0]
    )
    report.add_target("steady-load p50 latency ms", p50, 100, higher_is_better=False)
    report.add_target("steady-load p99 latency ms", p99, 400, higher_is_better=False)
    report.add_target("steady-load errors", errors, 0, higher_is_better=False)
    failures = Counter(f"{o.status} {o.error}".strip() for o in outcomes if o.status != "completed")
    if failures:
        report.notes.append("steady load, not completed: " + ", ".join(f"{n} {what}" for what, n in failures.items()))
    if latencies:
        report.notes.append(f"steady latency mean {statistics.fmean(latencies):.1f} ms, max {latencies[-1]:.1f} ms")


def _batch(
    report: Report, client: Client, people: list[dict[str, str]], size: int, database_url: str, pids: dict[str, int]
) -> None:
    import psycopg2

    def post(start: int) -> int:
        items = [
            {**_body(people[index % len(people)], f"BATCH-{index}"), "idempotency_key": f"BATCH-{index}"}
            for index in range(start, min(start + BATCH_CALL_ITEMS, size))
        ]
        try:
            status, body = client.call("POST", "/api/v1/underwriting-requests/batch", {"requests": items})
        except (OSError, http.client.HTTPException):
            return 0
        if status != 202:
            return 0
        return sum(1 for result in body.get("results", []) if "request" in result)

    meter = cpu_meter(pids)
    meter.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        accepted = sum(pool.map(post, range(0, size, BATCH_CALL_ITEMS)))
    submitted = time.perf_counter() - started
    connection = psycopg2.connect(database_url)
    connection.autocommit = True
    deadline = time.monotonic() + max(600.0, size / 5)
    done = 0
    try:
        while time.monotonic() < deadline:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM underwriting_underwritingrequest WHERE reference LIKE 'BATCH-%%' "
                    "AND status IN %s",
                    (TERMINAL,),
                )
                done = int(cursor.fetchone()[0])
            if done >= accepted:
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM underwriting_underwritingrequest WHERE reference LIKE 'BATCH-%%' "
                "AND status <> 'completed'"
            )
            not_completed = int(cursor.fetchone()[0])
    finally:
        connection.close()
    meter.stop()
    report.notes.append(f"batch, CPU ms per request: {meter.per_request_ms(size)}")
    lost = accepted - done
    rate = accepted / elapsed
    report.rows.append([f"batch of {size:,} (posted in {submitted:.0f} s)", size, elapsed, rate, "-", "-",
                        (size - accepted) + not_completed, lost])  # fmt: skip
    report.add_target(f"batch of {size:,} requests/s", rate, 50, higher_is_better=True)
    report.add_target("batch lost requests", lost, 0, higher_is_better=False)


def _stage_times(database_url: str, references: str, label: str = "steady load") -> str:
    """Median time each stage took (from the requests' own events): where a request's latency goes."""
    import psycopg2

    connection = psycopg2.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT to_status, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM ("
                " SELECT e.to_status, 1000 * EXTRACT(EPOCH FROM e.at - lag(e.at) OVER ("
                "  PARTITION BY e.request_id ORDER BY e.at, e.id)) AS ms"
                " FROM underwriting_requestevent e JOIN underwriting_underwritingrequest r ON r.id = e.request_id"
                " WHERE r.reference LIKE %s) steps WHERE ms IS NOT NULL GROUP BY to_status",
                [references],
            )
            medians = dict(cursor.fetchall())
    finally:
        connection.close()
    # The submission writes its events (received, verifying, extracting) together: extraction is timed
    # from the submission's commit.
    order = [("scoring", "extraction"), ("tiering", "scoring"), ("completed", "custodian and finalisation")]
    steps = ", ".join(f"{stage} {medians[status]:.1f}" for status, stage in order if status in medians)
    return f"{label}, median ms per stage, from the requests' events: {steps or 'none recorded'}"


def _percentile(values: list[float], percent: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(percent / 100 * len(values) + 0.5) - 1))
    return values[index]
