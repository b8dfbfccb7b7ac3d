"""Workers die, the custodian stops, a webhook receiver is down: requests still finish, exactly once."""

from __future__ import annotations

import itertools
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

from tests.faults.conftest import FaultStack, wait_terminal
from tests.population import wait_for
from tests.underwriting.conftest import request_body
from underwriting.models import RequestEvent, UnderwritingRequest, WebhookDelivery
from underwriting.services.webhooks import SIGNATURE_HEADER, verify_signature, webhook_endpoint_create

pytestmark = pytest.mark.integration
URL = "/api/v1/underwriting-requests"
HAPPY_PATH = ["received", "verifying", "extracting", "scoring", "tiering", "completed"]


def submit(population: dict[str, Any], count: int, prefix: str, start: int = 0) -> list[str]:
    ids = []
    for index in range(start, start + count):
        person = population["people"][index % len(population["people"])]
        response = population["api"].post(URL, request_body(person, reference=f"{prefix}-{index}"), format="json")
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])
    return ids


def assert_completed_once_with_a_consistent_trail(ids: list[str]) -> None:
    """Each request completed, and its timeline is the happy path once: no step recorded twice, each event
    leaving the state the previous one entered."""
    for request in UnderwritingRequest.objects.filter(pk__in=ids):
        assert request.status == "completed", (request.status, request.reason)
        events = list(RequestEvent.objects.filter(request=request).order_by("at", "id"))
        assert [event.to_status for event in events] == HAPPY_PATH
        for before, after in itertools.pairwise(events):
            assert after.from_status == before.to_status


def scoring_messages_in_flight() -> int:
    """Messages a worker has taken from the scoring queue and not yet acknowledged (kombu's ``unacked``)."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return sum(1 for raw in client.hvals("unacked") if json.loads(raw)[-1] == "scoring")


def test_scoring_worker_killed_mid_task_request_completes_once(faulty: FaultStack, population: dict[str, Any]) -> None:
    ids = submit(population, 16, "KILL")
    wait_for(lambda: scoring_messages_in_flight() > 0, timeout=60, interval=0.01, what="a scoring task in flight")
    faulty.pool.kill("scoring", signal.SIGKILL)  # kill -9, main process and pool children
    in_flight = scoring_messages_in_flight()
    assert in_flight > 0, "the killed worker held a task it had not acknowledged"

    faulty.start_worker("scoring")
    wait_terminal(ids, timeout=90, stack=faulty)

    assert_completed_once_with_a_consistent_trail(ids)


def test_custodian_stopped_requests_wait_then_complete(faulty: FaultStack, population: dict[str, Any]) -> None:
    faulty.pool.kill("custodian", signal.SIGTERM)
    ids = submit(population, 4, "WAIT")
    wait_for(
        lambda: set(UnderwritingRequest.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"tiering"},
        timeout=60, what="all requests waiting for the custodian",
    )  # fmt: skip
    # Longer than UNDERWRITING_MAX_ATTEMPTS x UNDERWRITING_STUCK_SECONDS: the sweeper must not give up on
    # requests that are waiting in the custodian's queue.
    stuck = int(faulty.env["UNDERWRITING_STUCK_SECONDS"]) * (int(faulty.env["UNDERWRITING_MAX_ATTEMPTS"]) + 2)
    deadline = time.monotonic() + stuck
    while time.monotonic() < deadline:
        assert set(UnderwritingRequest.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"tiering"}
        time.sleep(0.5)

    faulty.start_worker("custodian")
    wait_terminal(ids, timeout=60, stack=faulty)

    assert_completed_once_with_a_consistent_trail(ids)


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
