"""In the compose layout with beat, under a batch: every worker is killed, the database goes away, the
custodian stops, a webhook receiver is down. Every request still reaches its terminal status once, with the
tier the plaintext reference evaluator gives, and no log names an applicant (the ``population`` fixture)."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
from django.conf import settings

from tests.faults.conftest import (
    FAULT_GROUPS,
    TERMINAL,
    FaultStack,
    Supervisor,
    assert_completed_once_with_the_right_tiers,
    batch_under_way,
    statuses,
    submit,
    wait_terminal,
)
from tests.population import wait_for
from underwriting.models import UnderwritingRequest, WebhookDelivery
from underwriting.services.webhooks import SIGNATURE_HEADER, verify_signature, webhook_endpoint_create

pytestmark = pytest.mark.integration


def scoring_messages_in_flight() -> int:
    """Messages a worker has taken from the scoring queue and not yet acknowledged (kombu's ``unacked``)."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return sum(1 for raw in client.hvals("unacked") if json.loads(raw)[-1] == "scoring")


def test_every_worker_killed_mid_batch_every_request_completes_once(
    faulty: FaultStack, population: dict[str, Any]
) -> None:
    ids = submit(population, 30, "KILL")
    batch_under_way(ids, done=1)
    wait_for(lambda: scoring_messages_in_flight() > 0, timeout=60, interval=0.01, what="a scoring task in flight")
    with Supervisor(faulty) as supervisor:  # compose's restart policy
        # The scoring worker, seen holding a task, dies first: a scoring task takes a few tens of ms, and
        # killing the other zones first gave it the time to finish and acknowledge.
        for group in sorted(FAULT_GROUPS, key=lambda group: group != "scoring"):
            faulty.pool.kill(group, signal.SIGKILL)  # kill -9, main process and pool children, every zone
        assert scoring_messages_in_flight() > 0, "a killed worker held a task it had not acknowledged"
        wait_terminal(ids, timeout=120, stack=faulty)

    assert {restart.split(":")[0] for restart in supervisor.restarts} == set(FAULT_GROUPS)
    assert_completed_once_with_the_right_tiers(ids)


def test_database_cut_mid_batch_every_request_completes_once(faulty: FaultStack, population: dict[str, Any]) -> None:
    """PostgreSQL goes away under the workers and beat (every connection dropped, new ones refused) for a few
    seconds, then comes back: the tasks that hit the dead connection are retried or resumed by the sweeper."""
    if faulty.proxy is None:
        pytest.skip("the database cut needs PostgreSQL (set DATABASE_URL)")
    ids = submit(population, 30, "CUT")
    batch_under_way(ids)
    with Supervisor(faulty) as supervisor:
        faulty.proxy.cut()
        in_flight = UnderwritingRequest.objects.filter(pk__in=ids).exclude(status__in=TERMINAL).count()
        time.sleep(4)
        faulty.proxy.restore()
        wait_terminal(ids, timeout=120, stack=faulty)

    assert in_flight > 0, "the database went away while part of the batch was still in flight"
    assert supervisor.restarts == [], "a worker exited when it lost the database"
    assert_completed_once_with_the_right_tiers(ids)


def test_custodian_stopped_mid_batch_requests_wait_then_complete(
    faulty: FaultStack, population: dict[str, Any]
) -> None:
    ids = submit(population, 24, "WAIT")
    batch_under_way(ids, done=1)
    faulty.pool.kill("custodian", signal.SIGTERM)  # docker compose stop: it finishes the task in hand
    completed = UnderwritingRequest.objects.filter(pk__in=ids, status="completed").count()
    assert completed < len(ids)
    # Longer than UNDERWRITING_MAX_ATTEMPTS x UNDERWRITING_STUCK_SECONDS: the sweeper must not give up on
    # requests that are waiting in the custodian's queue.
    stuck = int(faulty.env["UNDERWRITING_STUCK_SECONDS"]) * (int(faulty.env["UNDERWRITING_MAX_ATTEMPTS"]) + 2)
    deadline = time.monotonic() + stuck
    while time.monotonic() < deadline:
        assert set(statuses(ids).values()) <= {"received", "verifying", "extracting", "scoring", "tiering", "completed"}
        time.sleep(0.5)
    # Everything that was not done has reached the custodian's step and waits there.
    assert set(statuses(ids).values()) <= {"tiering", "completed"}

    faulty.start_worker("custodian")
    wait_terminal(ids, timeout=90, stack=faulty)

    assert_completed_once_with_the_right_tiers(ids)


class LateReceiver:
    """An HTTP receiver on a fixed loopback port that is not listening until ``start``."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> None:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def test_webhook_receiver_down_gets_retries_then_the_event(faulty: FaultStack, population: dict[str, Any]) -> None:
    receiver = LateReceiver()
    endpoint, secret = webhook_endpoint_create(insurer_id=population["insurer"].pk, url=receiver.url)
    try:
        [request_id] = submit(population, 1, "HOOK")
        delivery = wait_for(
            lambda: WebhookDelivery.objects.filter(endpoint=endpoint, attempts__gte=2).first(),
            timeout=60, what="two failed delivery attempts",
        )  # fmt: skip
        assert delivery.status == WebhookDelivery.Status.PENDING
        assert delivery.last_error
        assert not receiver.received

        receiver.start()
        wait_for(lambda: receiver.received, timeout=60, what="the event delivered")
        delivered = wait_for(
            lambda: WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.DELIVERED).first(),
            timeout=30, what="the delivery marked delivered",
        )  # fmt: skip
        assert delivered.attempts >= 3
        headers, body = receiver.received[0]
        assert verify_signature(secret, headers[SIGNATURE_HEADER], body)
        event = json.loads(body)
        assert event["type"] == "request.completed"
        assert event["data"]["id"] == request_id
        assert {json.loads(b)["id"] for _, b in receiver.received} == {event["id"]}  # one event, maybe redelivered
    finally:
        receiver.stop()
