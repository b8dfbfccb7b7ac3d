"""Resident confirmation on the real stack: the API in this process, Celery workers over Redis on the
test database (the domain worker sends the codes and notices, the scoring worker runs the sweeper and the
stages, the custodian decrypts), the resident page through Django's test client, a webhook receiver on
loopback. One request is approved and gets a tier, one is declined, one expires; the insurer hears of
each change by a signed webhook and no webhook carries the resident's ID or name."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from config.celery import app as celery_app
from datadomain import messaging
from datadomain.models.identity import MessageDelivery
from datadomain.residents import contact_set_for_subject, resident_code_send
from datadomain.services import subject_key_for
from tests.population import make_population
from tests.underwriting.conftest import request_body
from tests.webhook_receiver import Receiver
from underwriting.models import ConsentConfirmation, ConsentMode, RequestStatus, UnderwritingRequest
from underwriting.services.confirmations import consent_policy_set
from underwriting.services.webhooks import SIGNATURE_HEADER, verify_signature, webhook_endpoint_create

pytestmark = pytest.mark.integration
URL = "/api/v1/underwriting-requests"


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


@pytest.fixture
def world(celery_workers: Any, tmp_path: Path, receiver: Receiver, settings: Any) -> dict[str, Any]:
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 100
    world = make_population(tmp_path, patients=6, seed=23, insurer_slug="confirm-life")
    consent_policy_set(insurer_id=world["insurer"].pk, mode=ConsentMode.RESIDENT, confirmation_hours=72, actor="bureau")
    _endpoint, secret = webhook_endpoint_create(insurer_id=world["insurer"].pk, url=receiver.url)
    for index, person in enumerate(world["people"][:3]):
        assert contact_set_for_subject(
            subject_key=subject_key_for(person["resident_id"]), phone=f"+86138000000{index:02d}"
        )
    messaging.outbox.clear()
    return {**world, "secret": secret}


def sign_in(client: Client, person: dict[str, str]) -> None:
    """The resident page asks the domain worker for a code; once it has gone out (its delivery row says
    so), the test draws the attempt's code again in this process, where the locmem backend keeps it."""
    subject = subject_key_for(person["resident_id"])
    response = client.post("/residents/sign-in", {"resident_id": person["resident_id"]})
    assert response["Location"] == "/residents/sign-in/code"
    wait_for(
        lambda: MessageDelivery.objects.filter(
            subject_key=subject, kind=MessageDelivery.Kind.SIGNIN_CODE, status=MessageDelivery.Status.SENT
        ).exists(),
        "the domain worker sent the sign-in code",
    )
    messaging.outbox.clear()
    assert resident_code_send(code_id=client.session["resident_code"])
    [(_, text)] = messaging.outbox
    code = re.search(r"\d{6}", text)
    assert code is not None
    response = client.post("/residents/sign-in/code", {"code": code.group(0)})
    assert response["Location"] == "/residents/"


def events_for(receiver: Receiver, secret: str) -> dict[str, list[str]]:
    events: dict[str, list[str]] = {}
    for delivery in list(receiver.received):
        assert verify_signature(secret, delivery.headers[SIGNATURE_HEADER], delivery.body)
        body = json.loads(delivery.body)
        events.setdefault(str(body["data"]["id"]), []).append(body["type"])
    return events


def test_approved_declined_and_expired_with_webhooks(world: dict[str, Any], receiver: Receiver) -> None:
    approver, decliner, silent = world["people"][:3]
    ids = []
    for index, person in enumerate((approver, decliner, silent)):
        response = world["api"].post(URL, request_body(person, reference=f"CONFIRM-{index}"), format="json")
        assert response.status_code == 202, response.content
        assert response.json()["status"] == RequestStatus.AWAITING_CONSENT
        ids.append(response.json()["id"])
    approved_id, declined_id, expired_id = ids
    wait_for(
        lambda: (
            MessageDelivery.objects.filter(
                kind=MessageDelivery.Kind.CONSENT_NOTICE, status=MessageDelivery.Status.SENT
            ).count()
            == 3
        ),
        "each resident was told a request waits",
    )

    # Nothing reaches scoring before the resident decides.
    time.sleep(1.0)
    assert set(UnderwritingRequest.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        RequestStatus.AWAITING_CONSENT
    }

    first = Client()
    sign_in(first, approver)
    assert approved_id in first.get("/residents/").content.decode()
    assert declined_id not in first.get("/residents/").content.decode()  # only the resident's own
    assert first.post(f"/residents/requests/{approved_id}/decide", {"action": "approve"}).status_code == 302

    second = Client()
    sign_in(second, decliner)
    assert second.post(f"/residents/requests/{approved_id}/decide", {"action": "approve"}).status_code == 404
    assert second.post(f"/residents/requests/{declined_id}/decide", {"action": "decline"}).status_code == 302

    # The third resident never answers: the window passes and the sweeper (on the scoring worker) ends it.
    ConsentConfirmation.objects.filter(request_id=expired_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    celery_app.send_task("underwriting.tasks.sweep_requests")

    terminal = {RequestStatus.COMPLETED, RequestStatus.REJECTED, RequestStatus.UNRATED, RequestStatus.FAILED}

    def all_ended() -> dict[str, UnderwritingRequest] | None:
        rows = {str(r.pk): r for r in UnderwritingRequest.objects.filter(pk__in=ids)}
        return rows if all(r.status in terminal for r in rows.values()) else None

    rows = wait_for(all_ended, "every request reached its end", timeout=120)
    assert rows[approved_id].status == RequestStatus.COMPLETED
    assert rows[approved_id].tier_code in {"A", "B", "C", "D"}
    assert (rows[declined_id].status, rows[declined_id].reason) == ("rejected", "consent_declined")
    assert (rows[expired_id].status, rows[expired_id].reason) == ("rejected", "consent_expired")
    statuses = dict(ConsentConfirmation.objects.filter(request_id__in=ids).values_list("request_id", "status"))
    assert {str(k): v for k, v in statuses.items()} == {
        approved_id: "approved",
        declined_id: "declined",
        expired_id: "expired",
    }

    expected = {
        approved_id: ["request.awaiting_consent", "request.completed"],
        declined_id: ["request.awaiting_consent", "request.rejected"],
        expired_id: ["request.awaiting_consent", "request.rejected"],
    }

    def all_heard() -> dict[str, list[str]] | None:
        events = events_for(receiver, world["secret"])
        return events if {k: sorted(v) for k, v in events.items()} == expected else None

    events = wait_for(all_heard, "each change reached the insurer's receiver")
    assert set(events) == set(ids)
    detail = world["api"].get(f"{URL}/{approved_id}").json()
    assert detail["result"]["tier"] == rows[approved_id].tier_code
    text = b"\n".join(d.body for d in receiver.received).decode()
    for person in (approver, decliner, silent):
        assert person["resident_id"] not in text
        assert person["name"] not in text
