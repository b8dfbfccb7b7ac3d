from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tenants.models import Insurer
from tests.webhook_receiver import Receiver
from underwriting.models import RequestStatus, UnderwritingRequest, WebhookDelivery
from underwriting.services.webhooks import (
    SIGNATURE_HEADER,
    sign,
    verify_signature,
    webhook_deliver,
    webhook_endpoint_create,
    webhook_endpoint_secret,
    webhook_replay,
    webhooks_enqueue_for_request,
)
from underwriting.webhook_secrets import SecretUnreadableError

pytestmark = pytest.mark.django_db


def completed_request(insurer: Insurer) -> UnderwritingRequest:
    return UnderwritingRequest.objects.create(
        insurer=insurer, reference="APP-9", subject_key="k" * 64, resident_id_masked="370214********123X",
        manual_slug="charlson-acci", as_of="2026-11-23", status=RequestStatus.COMPLETED, tier_code="B",
        tier_label="Standard", decision="accept",
    )  # fmt: skip


def test_signature_round_trip_and_tamper_detection() -> None:
    header = sign("whsec_x", 1_700_000_000, b'{"a":1}')
    assert verify_signature("whsec_x", header, b'{"a":1}', now=1_700_000_010)
    assert not verify_signature("whsec_x", header, b'{"a":2}', now=1_700_000_010)
    assert not verify_signature("whsec_y", header, b'{"a":1}', now=1_700_000_010)
    assert not verify_signature("whsec_x", header, b'{"a":1}', now=1_700_001_000)  # replayed too late
    assert not verify_signature("whsec_x", "garbage", b"{}")


def test_delivers_a_signed_event_once_per_endpoint(
    insurer: Insurer, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    _, secret = webhook_endpoint_create(insurer_id=insurer.pk, url=receiver.url)
    request = completed_request(insurer)
    with django_capture_on_commit_callbacks() as callbacks:
        first = webhooks_enqueue_for_request(request_id=request.pk)
        again = webhooks_enqueue_for_request(request_id=request.pk)
    assert len(first) == 1
    assert again == []
    assert len(callbacks) == 1  # one delivery task queued after commit
    assert webhook_deliver(delivery_id=first[0]) is None  # what that task does, here in-process
    assert len(receiver.received) == 1
    delivery = receiver.received[0]
    assert verify_signature(secret, delivery.headers[SIGNATURE_HEADER], delivery.body)
    event = json.loads(delivery.body)
    assert event["type"] == "request.completed"
    assert event["data"]["result"] == {"tier": "B", "label": "Standard", "decision": "accept", "table_rating": None}
    assert "subject_key" not in delivery.body.decode()
    assert WebhookDelivery.objects.get().status == WebhookDelivery.Status.DELIVERED


def test_retries_with_backoff_then_gives_up(insurer: Insurer, receiver: Receiver, settings: Any) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    settings.WEBHOOK_RETRY_BASE_SECONDS = 2
    webhook_endpoint_create(insurer_id=insurer.pk, url=receiver.url)
    request = completed_request(insurer)
    receiver.fail_next = 10
    [delivery_id] = webhooks_enqueue_for_request(request_id=request.pk)
    delays = [webhook_deliver(delivery_id=delivery_id) for _ in range(3)]
    assert delays == [2.0, 4.0, None]
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 3, 503)
    receiver.fail_next = 0
    webhook_replay(delivery_id=delivery_id)
    assert webhook_deliver(delivery_id=delivery_id) is None
    assert WebhookDelivery.objects.get(pk=delivery_id).status == "delivered"
    assert len(receiver.received) == 1


def test_unreachable_endpoint_is_recorded_without_raising(insurer: Insurer) -> None:
    webhook_endpoint_create(insurer_id=insurer.pk, url="http://127.0.0.1:9/nothing-listens-here")
    [delivery_id] = webhooks_enqueue_for_request(request_id=completed_request(insurer).pk)
    assert webhook_deliver(delivery_id=delivery_id) is not None
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert delivery.last_status_code is None
    assert delivery.last_error


def test_no_event_for_a_request_in_progress(insurer: Insurer) -> None:
    request = completed_request(insurer)
    UnderwritingRequest.objects.filter(pk=request.pk).update(status=RequestStatus.SCORING)
    assert webhooks_enqueue_for_request(request_id=request.pk) == []


def test_a_new_secret_key_reencrypts_every_signing_secret(insurer: Insurer, settings: Any) -> None:
    endpoint, secret = webhook_endpoint_create(insurer_id=insurer.pk, url="http://127.0.0.1:9/hooks")
    settings.WEBHOOK_SECRET_KEY = "a-dedicated-webhook-key-0f1e2d3c4b5a6978"
    with pytest.raises(CommandError, match="WEBHOOK_SECRET_KEY_FALLBACKS"):
        call_command("reencrypt_webhook_secrets", stdout=StringIO())
    settings.WEBHOOK_SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]  # the key the secrets were derived from
    out = StringIO()
    call_command("reencrypt_webhook_secrets", stdout=out)
    assert "Re-encrypted 1 webhook signing secrets." in out.getvalue()
    settings.WEBHOOK_SECRET_KEY_FALLBACKS = []
    endpoint.refresh_from_db()
    assert webhook_endpoint_secret(endpoint) == secret
    settings.WEBHOOK_SECRET_KEY = "yet-another-key-without-a-fallback-99"
    with pytest.raises(SecretUnreadableError):
        webhook_endpoint_secret(endpoint)
