"""Resident-confirmation mode through the services: awaiting_consent, approval, decline, expiry, webhooks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from datadomain import messaging
from datadomain.models import Consent
from tenants.models import Insurer
from tests.residents.conftest import ALICE_PHONE
from tests.underwriting.conftest import client_for, request_body
from underwriting.errors import UnderwritingError
from underwriting.models import (
    ConsentConfirmation,
    RequestStatus,
    UnderwritingRequest,
    WebhookDelivery,
)
from underwriting.services.confirmations import confirmation_approve, confirmation_decline, confirmations_expire
from underwriting.services.webhooks import webhook_endpoint_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("approved_manuals", "held", "in_process_tasks")]
URL = "/api/v1/underwriting-requests"


def submit(insurer: Insurer, body: dict[str, Any]) -> dict[str, Any]:
    response = client_for(insurer).post(URL, body, format="json")
    assert response.status_code == 202, response.content
    return dict(response.json())


@pytest.fixture
def endpoint(resident_mode: Insurer) -> None:
    webhook_endpoint_create(insurer_id=resident_mode.pk, url="http://127.0.0.1:9/hook")


def events(request_id: str) -> list[str]:
    return sorted(WebhookDelivery.objects.filter(request_id=request_id).values_list("event_type", flat=True))


def test_a_request_waits_for_the_resident_and_the_insurer_is_told(
    resident_mode: Insurer, alice_with_phone: dict[str, str], endpoint: None, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        body = submit(resident_mode, request_body(alice_with_phone))
    assert (body["status"], body["reason"]) == ("awaiting_consent", None)
    assert events(body["id"]) == ["request.awaiting_consent"]
    confirmation = ConsentConfirmation.objects.get(request_id=body["id"])
    assert confirmation.reachable
    assert confirmation.status == "pending"
    # The resident is told where to look; nothing about the insurer or the request is in the message.
    [(to, text)] = messaging.outbox
    assert to == ALICE_PHONE
    assert "/residents/" in text


def test_approval_moves_the_request_on_and_records_the_consent(
    resident_mode: Insurer,
    alice_with_phone: dict[str, str],
    endpoint: None,
    held: list[str],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        body = submit(resident_mode, request_body(alice_with_phone))
    assert "extract" not in held  # nothing reaches the pipeline before the resident confirms
    subject = UnderwritingRequest.objects.get(pk=body["id"]).subject_key
    with django_capture_on_commit_callbacks(execute=True):
        request = confirmation_approve(request_id=body["id"], subject_key=subject)
    assert request.status == RequestStatus.EXTRACTING
    assert "extract" in held
    consent = Consent.objects.get(pk=request.consent_id)
    assert consent.reference == f"resident-confirmation:{body['id']}"
    assert consent.scope == ["underwriting"]
    assert ConsentConfirmation.objects.get(request_id=body["id"]).status == "approved"
    with pytest.raises(UnderwritingError):  # decided once
        confirmation_decline(request_id=body["id"], subject_key=subject)


def test_decline_rejects_with_its_reason_and_a_webhook(
    resident_mode: Insurer, alice_with_phone: dict[str, str], endpoint: None
) -> None:
    body = submit(resident_mode, request_body(alice_with_phone))
    subject = UnderwritingRequest.objects.get(pk=body["id"]).subject_key
    request = confirmation_decline(request_id=body["id"], subject_key=subject)
    assert (request.status, request.reason) == ("rejected", "consent_declined")
    assert events(body["id"]) == ["request.awaiting_consent", "request.rejected"]
    payload = WebhookDelivery.objects.get(request_id=body["id"], event_type="request.rejected").payload
    assert payload["data"]["reason"] == "consent_declined"


def test_unanswered_requests_expire_and_the_insurer_is_told(
    resident_mode: Insurer, alice_with_phone: dict[str, str], endpoint: None
) -> None:
    body = submit(resident_mode, request_body(alice_with_phone))
    assert confirmations_expire() == 0
    with time_machine.travel(timezone.now() + timedelta(hours=72, seconds=1)):
        assert confirmations_expire() == 1
        assert confirmations_expire() == 0  # safe to run twice
    request = UnderwritingRequest.objects.get(pk=body["id"])
    assert (request.status, request.reason) == ("rejected", "consent_expired")
    assert events(body["id"]) == ["request.awaiting_consent", "request.rejected"]


def test_approval_after_expiry_is_refused(resident_mode: Insurer, alice_with_phone: dict[str, str]) -> None:
    body = submit(resident_mode, request_body(alice_with_phone))
    subject = UnderwritingRequest.objects.get(pk=body["id"]).subject_key
    with time_machine.travel(timezone.now() + timedelta(hours=73)), pytest.raises(UnderwritingError):
        confirmation_approve(request_id=body["id"], subject_key=subject)


def test_form_mode_needs_the_form_in_the_consent_store(
    insurer: Insurer, alice: dict[str, str], settings: Any, tmp_path: Any
) -> None:
    from datadomain.consent_store import consent_artifact_store
    from underwriting.models import ConsentMode, ConsentPolicy

    settings.CONSENT_STORE_DIR = tmp_path / "store"
    ConsentPolicy.objects.create(insurer=insurer, mode=ConsentMode.FORM)
    claimed = submit(insurer, request_body(alice, reference="A1", artifact_sha256="b" * 64))
    assert (claimed["status"], claimed["reason"]) == ("rejected", "not_verified")
    digest = consent_artifact_store(content=b"%PDF signed form")
    body = request_body(alice, reference="A2", artifact_sha256=digest)
    body["consent"]["reference"] = "CONSENT-2"
    assert submit(insurer, body)["status"] == "extracting"
