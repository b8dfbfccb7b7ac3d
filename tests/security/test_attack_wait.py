"""Attack: `GET .../{id}?wait=10` calls that hold a real gunicorn's threads.

Sixteen concurrent waits once made /healthz take nine seconds: every gthread thread sat in a wait, and the
probe queued behind them (an orchestrator then restarts a healthy container). Waiters are now bounded per
process (a fraction of the threads) and per API key; those over a bound are answered at once with the
current status and ``X-Wait: skipped``. The tests drive a real gunicorn with few threads and many waits,
and assert order and outcomes, never durations.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings

from insurer_portal.services import api_key_create
from tests.factories import InsurerFactory
from tests.gunicorn import Server, gunicorn_server
from tests.population import wait_for
from tests.services import require_redis
from underwriting.models import RequestStatus, UnderwritingRequest
from underwriting.services import notify

URL = "/api/v1/underwriting-requests"


@dataclass
class Answer:
    label: str
    status: int
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def skipped(self) -> bool:
        return self.headers.get("x-wait") == "skipped"


@dataclass
class Calls:
    """Concurrent calls to the server; answers are kept in the order they arrived."""

    server: Server
    answers: list[Answer] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, label: str, path: str, key: str = "") -> None:
        thread = threading.Thread(target=self._call, args=(label, path, key), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _call(self, label: str, path: str, key: str) -> None:
        answer = call(self.server, path, key)
        with self.lock:
            self.answers.append(Answer(label, *answer))

    def arrived(self, predicate: Any = lambda answer: True) -> list[Answer]:
        with self.lock:
            return [answer for answer in self.answers if predicate(answer)]

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=60)


def call(server: Server, path: str, key: str = "", timeout: float = 60.0) -> tuple[int, dict[str, str], dict[str, Any]]:
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        client.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
        response = client.getresponse()
        raw = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, json.loads(raw) if raw else {}
    finally:
        client.close()


def pending_request(insurer: Any) -> UnderwritingRequest:
    """A request stuck in scoring: nothing will move it on unless the test does."""
    return UnderwritingRequest.objects.create(
        insurer=insurer, reference="WAIT-1", subject_key="c" * 64, resident_id_masked="110101********001X",
        manual_slug="charlson-acci", as_of=date(2026, 11, 23), status=RequestStatus.SCORING,
    )  # fmt: skip


def complete(*requests: UnderwritingRequest) -> None:
    """Finish the requests as the pipeline would: the row, then the wake-up (after the commit)."""
    ids = [request.pk for request in requests]
    UnderwritingRequest.objects.filter(pk__in=ids).update(status=RequestStatus.COMPLETED, tier_code="B")
    notify.announce_terminal(*ids)


def keyed_request() -> tuple[str, UnderwritingRequest]:
    insurer = InsurerFactory()
    _, key = api_key_create(insurer=insurer)
    return key, pending_request(insurer)


def server_env(*, per_process: int, per_key: int) -> dict[str, str]:
    return {
        "API_WAIT_MAX_PER_PROCESS": str(per_process),
        "API_WAIT_MAX_PER_KEY": str(per_key),
        "API_THROTTLE_RATE": "100000/min",
    }


def test_health_and_readiness_answer_while_any_number_of_calls_wait(transactional_db: None, tmp_path: Path) -> None:
    # Three insurers, four waits each, on a server with 4 threads that lets 2 calls wait at a time.
    clients = [keyed_request() for _ in range(3)]
    with gunicorn_server(tmp_path, threads=4, extra_env=server_env(per_process=2, per_key=2)) as server:
        calls = Calls(server)
        for key, request in clients:
            for _ in range(4):
                calls.start("wait", f"{URL}/{request.pk}?wait=10", key)
        # All but the two admitted waiters are answered at once: they never queue behind the waiters.
        wait_for(
            lambda: len(calls.arrived()) >= 10, timeout=30, what=f"10 of 12 waits answered (log: {server.log_tail()})"
        )
        skipped = calls.arrived(lambda answer: answer.skipped)
        assert len(skipped) == 10
        assert {answer.status for answer in skipped} == {200}
        assert {answer.body["status"] for answer in skipped} == {"scoring"}  # the current status, at once
        assert {answer.headers.get("retry-after") for answer in skipped} == {"2"}

        # The two admitted waiters still hold their threads: the probes must be answered regardless.
        health = call(server, "/healthz", timeout=30)
        ready = call(server, "/readyz", timeout=30)
        assert health[0] == 200
        assert ready[0] == 200, ready[2]
        assert calls.arrived(lambda answer: not answer.skipped) == [], "a waiter ended before the probes"

        complete(*(request for _, request in clients))
        calls.join()
    admitted = calls.arrived(lambda answer: not answer.skipped)
    assert len(admitted) == 2
    # They were still waiting when the probes were answered: they saw the completion, not a timeout.
    assert {answer.body["status"] for answer in admitted} == {"completed"}


def test_one_key_cannot_take_every_waiting_slot(transactional_db: None, tmp_path: Path) -> None:
    (greedy_key, greedy_request), (other_key, other_request) = keyed_request(), keyed_request()
    with gunicorn_server(tmp_path, threads=4, extra_env=server_env(per_process=3, per_key=2)) as server:
        calls = Calls(server)
        for _ in range(4):
            calls.start("greedy", f"{URL}/{greedy_request.pk}?wait=10", greedy_key)
        wait_for(lambda: len(calls.arrived()) >= 2, timeout=30, what="the greedy key's extra waits answered")
        # The process has a free waiting slot left, and another insurer gets it: its short wait runs out
        # (the request stays in scoring) without being turned away.
        other = Answer("other", *call(server, f"{URL}/{other_request.pk}?wait=1", other_key))
        assert calls.arrived(lambda answer: not answer.skipped) == [], "the greedy key's waiters stopped early"
        complete(greedy_request)
        calls.join()
    greedy = calls.arrived(lambda answer: answer.label == "greedy")
    assert sorted(answer.skipped for answer in greedy) == [False, False, True, True]
    assert {answer.body["status"] for answer in greedy if not answer.skipped} == {"completed"}
    assert (other.status, other.skipped, other.body["status"]) == (200, False, "scoring")


def test_a_finished_request_is_answered_while_the_slots_are_full(transactional_db: None, tmp_path: Path) -> None:
    (key, pending), (_, finished) = keyed_request(), keyed_request()
    finished.insurer = pending.insurer
    UnderwritingRequest.objects.filter(pk=finished.pk).update(insurer=pending.insurer)
    complete(finished)
    with gunicorn_server(tmp_path, threads=3, extra_env=server_env(per_process=1, per_key=1)) as server:
        calls = Calls(server)
        for _ in range(3):
            calls.start("holder", f"{URL}/{pending.pk}?wait=10", key)
        # Two are turned away at once, so the third holds the one slot.
        wait_for(lambda: len(calls.arrived()) == 2, timeout=30, what="two of three waits answered")
        status, headers, body = call(server, f"{URL}/{finished.pk}?wait=10", key)
        assert len(calls.arrived()) == 2, "the holder stopped waiting early"
        complete(pending)
        calls.join()
    assert (status, "x-wait" in headers, body["status"]) == (200, False, "completed")
    [holder] = calls.arrived(lambda answer: not answer.skipped)
    assert holder.body["status"] == "completed"


@pytest.fixture
def shared_waiters(settings: Any) -> redis.Redis:
    settings.REDIS_URL = require_redis()
    settings.API_WAIT_MAX_PER_KEY = 1
    settings.API_WAIT_MAX_PER_PROCESS = 10
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(f"{notify.WAITERS_PREFIX}key-7")
    yield client
    client.delete(f"{notify.WAITERS_PREFIX}key-7")


def test_a_keys_waiters_in_other_processes_count(shared_waiters: redis.Redis) -> None:
    """Another web process's waiter for the same key (an entry in Redis) fills the key's bound here too;
    once its lease lapses (a process killed mid-wait), the slot frees itself."""
    name = f"{notify.WAITERS_PREFIX}key-7"
    shared_waiters.zadd(name, {"other-process": time.time() + 60})
    with notify.waiter_slot("key-7", 5) as admitted:
        assert admitted is False
    shared_waiters.zadd(name, {"other-process": time.time() - 1})  # its lease has lapsed
    with notify.waiter_slot("key-7", 5) as admitted:
        assert admitted is True
        assert shared_waiters.zcard(name) == 1
    assert shared_waiters.zcard(name) == 0  # released


def test_waiter_slots_are_released_whatever_happens(settings: Any) -> None:
    settings.REDIS_URL = ""
    settings.API_WAIT_MAX_PER_PROCESS = 1
    settings.API_WAIT_MAX_PER_KEY = 1

    def failed_wait() -> None:
        with notify.waiter_slot("k", 1) as admitted:
            assert admitted
            raise RuntimeError("the wait failed")

    with pytest.raises(RuntimeError):
        failed_wait()
    with notify.waiter_slot("k", 1) as admitted, notify.waiter_slot("other", 1) as second:
        assert (admitted, second) == (True, False)  # the process bound, whatever the key
    assert django_settings.API_WAIT_MAX_PER_PROCESS == 1
