"""Fault injection on real processes in the compose layout: one worker process per trust zone (domain;
scoring and webhooks; the custodian), each connecting as its zone's own database role (``manage.py
db_roles``, tests/workers.py), and a real ``celery beat`` that runs the sweeper every second. The session's
worker pool is restarted with short recovery timeouts (the product's own knobs, read from the environment by
the workers and by beat) and, on PostgreSQL, with every worker and beat connecting through a
:class:`~tests.faults.proxy.CuttableProxy` (persistent connections, as in compose), so that a test can cut
the database away from them. Afterwards the pool is restarted as it was."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from datadomain.selectors import subject_features
from tests.faults.proxy import CuttableProxy
from tests.population import make_population as populate
from tests.population import wait_for
from tests.underwriting.conftest import request_body
from tests.workers import ROOT, WorkerPool
from underwriting.models import RequestEvent, UnderwritingRequest
from underwriting.reference import builtin_documents, evaluate

# One group per trust zone (tests/workers.py), so that each can be killed alone.
FAULT_GROUPS = {
    "domain": ["domain"],
    "scoring": ["scoring", "webhooks"],
    "custodian": ["custodian"],
}
# The product's recovery knobs, short: a stuck step is resumed after 3 s, the sweeper runs every second.
FAULT_ENV = {
    "UNDERWRITING_STUCK_SECONDS": "3",
    "UNDERWRITING_SWEEP_SECONDS": "1",
    "UNDERWRITING_MAX_ATTEMPTS": "3",
    "UNDERWRITING_RATE_LIMIT_COUNT": "1000",
    # Small chunks, so that a batch is still partly in flight when a fault strikes (one chunk of 20 requests
    # can complete in one go, before the test has had a chance to break anything).
    "UNDERWRITING_STAGE_CHUNK": "4",
    "WEBHOOK_RETRY_BASE_SECONDS": "0.5",
    "WEBHOOK_TIMEOUT_SECONDS": "2",
    "HEARTBEAT_SECONDS": "300",
    "CELERY_TASK_SOFT_TIME_LIMIT": "20",
    "CELERY_TASK_TIME_LIMIT": "25",
    "CELERY_VISIBILITY_TIMEOUT": "30",
}
TERMINAL = {"completed", "rejected", "unrated", "failed"}
URL = "/api/v1/underwriting-requests"
HAPPY_PATH = ["received", "verifying", "extracting", "scoring", "tiering", "completed"]


class FaultStack:
    """The fault pool (domain, scoring, custodian workers) and a beat process, all with FAULT_ENV."""

    def __init__(self, pool: WorkerPool, env: dict[str, str], proxy: CuttableProxy | None = None) -> None:
        self.pool = pool
        self.env = env
        self.proxy = proxy
        self.beat: subprocess.Popen[bytes] | None = None

    def worker_env(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.env,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "TEST_WORKER_DATABASE_NAME": self.pool.database_name,
            "PYTHONUNBUFFERED": "1",
        }

    def start_worker(self, group: str) -> None:
        self.pool.start_one(group, FAULT_GROUPS[group], self.worker_env())
        self.pool.wait_ready(timeout=60)

    def start_beat(self) -> None:
        schedule = self.pool.log_dir / "beat-schedule"
        log = (self.pool.log_dir / "beat.log").open("wb")
        command = [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "INFO", "--schedule", str(schedule)]
        env = {**self.worker_env(), **self.pool.role_env("scoring")}  # beat only enqueues: the scoring zone's role
        self.beat = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop_beat(self) -> None:
        if self.beat is not None and self.beat.poll() is None:
            self.beat.send_signal(signal.SIGTERM)
            try:
                self.beat.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.beat.kill()
                self.beat.wait()
        self.beat = None

    def logs(self) -> str:
        paths = sorted(self.pool.log_dir.glob("*.log"))
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')}" for path in paths)


class Supervisor:
    """Restarts a worker whose process exited, as the deployment's supervisor does (compose's
    ``restart: unless-stopped``). Celery 5.7's Redis transport can die with an "Unrecoverable error" when
    the broker connection drops while it restores unacknowledged messages; the restart is part of the
    recovery, so the tests count restarts rather than hide them."""

    def __init__(self, stack: FaultStack) -> None:
        self.stack = stack
        self.restarts: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for group, worker in list(self.stack.pool.workers.items()):
                if worker.process.poll() is not None:
                    self.restarts.append(f"{group}: {worker.log_tail(3)}")
                    # Keep the dead worker's log (the restarted one writes a new one); logs() still reads it.
                    shutil.copyfile(worker.log_path, worker.log_path.with_name(f"{group}-exit{len(self.restarts)}.log"))
                    self.stack.pool.start_one(group, FAULT_GROUPS[group], self.stack.worker_env())


def database_proxy() -> tuple[CuttableProxy | None, dict[str, str]]:
    """On PostgreSQL, a proxy in front of it and the environment that sends a worker's connections through
    it, kept open between tasks as compose's CONN_MAX_AGE keeps them; nothing on SQLite."""
    settings_dict = connection.settings_dict
    if "postgresql" not in settings_dict["ENGINE"]:
        return None, {}
    proxy = CuttableProxy((settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"] or 5432)))
    user = settings_dict["USER"] or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict["PASSWORD"] else ""
    url = f"postgres://{user}{password}@127.0.0.1:{proxy.port}/{settings_dict['NAME']}"
    return proxy, {"DATABASE_URL": url, "TEST_WORKER_CONN_MAX_AGE": "60"}


def start_fault_stack(pool: WorkerPool, env: dict[str, str], proxy: CuttableProxy | None = None) -> FaultStack:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        pool.start(groups=FAULT_GROUPS)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    stack = FaultStack(pool, env, proxy)
    stack.start_beat()
    return stack


@pytest.fixture(scope="module")
def fault_stack(_worker_pool: WorkerPool) -> Iterator[FaultStack]:
    """The session pool, restarted with FAULT_ENV for this module, and restarted as before afterwards."""
    _worker_pool.stop()
    proxy, proxy_env = database_proxy()
    stack = start_fault_stack(_worker_pool, {**FAULT_ENV, **proxy_env}, proxy)
    try:
        yield stack
    finally:
        stack.stop_beat()
        _worker_pool.stop()
        if proxy is not None:
            proxy.close()
        _worker_pool.start()


@pytest.fixture
def faulty(fault_stack: FaultStack, transactional_db: None, settings: Any) -> FaultStack:
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 1000
    if fault_stack.proxy is not None:
        fault_stack.proxy.restore()  # a failed test may have left it cut
    for group in FAULT_GROUPS:  # a test may have left a group stopped
        worker = fault_stack.pool.workers.get(group)
        if worker is None or worker.process.poll() is not None:
            fault_stack.start_worker(group)
    return fault_stack


def make_population(tmp_path: Path) -> dict[str, Any]:
    return populate(tmp_path, patients=30, seed=23, insurer_slug="fault-life")


@pytest.fixture
def population(faulty: FaultStack, tmp_path: Path) -> Iterator[dict[str, Any]]:
    population = make_population(tmp_path)
    yield population
    assert_no_personal_data_in_logs(faulty, population["people"])


def assert_no_personal_data_in_logs(stack: FaultStack, people: list[dict[str, str]]) -> None:
    """Worker and beat logs (crashes and tracebacks included) never name an applicant."""
    logs = stack.logs()
    for person in people:
        assert person["resident_id"] not in logs
        assert person["name"] not in logs


def statuses(ids: list[str]) -> dict[str, str]:
    rows = UnderwritingRequest.objects.filter(pk__in=ids).values_list("pk", "status")
    return {str(pk): status for pk, status in rows}


def wait_terminal(ids: list[str], timeout: float = 90.0, stack: FaultStack | None = None) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = statuses(ids)
        if len(current) == len(ids) and set(current.values()) <= TERMINAL:
            return current
        time.sleep(0.2)
    pending = sorted(s for s in statuses(ids).values() if s not in TERMINAL)
    logs = stack.logs()[-6000:] if stack else ""
    raise AssertionError(f"requests not terminal after {timeout}s: {pending}\n{logs}")


def submit(population: dict[str, Any], count: int, prefix: str, start: int = 0) -> list[str]:
    """``count`` requests through the API, for the population's residents in turn; their ids."""
    ids = []
    for index in range(start, start + count):
        person = population["people"][index % len(population["people"])]
        response = population["api"].post(URL, request_body(person, reference=f"{prefix}-{index}"), format="json")
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])
    return ids


def batch_under_way(ids: list[str], done: int = 3) -> None:
    """Wait until at least ``done`` of the batch completed while the rest is still in flight."""

    def under_way() -> bool:
        completed = UnderwritingRequest.objects.filter(pk__in=ids, status="completed").count()
        assert completed < len(ids), "the batch completed before the fault: make it larger or the chunks smaller"
        return completed >= done

    wait_for(under_way, timeout=60, interval=0.05, what="the batch under way")


def assert_completed_once_with_the_right_tiers(ids: list[str]) -> None:
    """Each request completed once, with the tier the plaintext reference evaluator gives its subject's known
    features: its timeline is the happy path once (no step recorded twice, each event leaving the state the
    previous one entered)."""
    documents = builtin_documents()
    requests = list(UnderwritingRequest.objects.filter(pk__in=ids))
    assert len(requests) == len(set(ids))
    for request in requests:
        assert request.status == "completed", (request.status, request.reason)
        events = list(RequestEvent.objects.filter(request=request).order_by("at", "id"))
        assert [event.to_status for event in events] == HAPPY_PATH
        for before, after in itertools.pairwise(events):
            assert after.from_status == before.to_status
        document = documents[request.manual_slug]
        features = subject_features(
            subject_key=request.subject_key, feature_names=document.feature_names, as_of=request.as_of
        )
        expected = evaluate(document, features).tier
        assert (request.tier_code, request.decision) == (expected.code, expected.decision)
