"""Signed webhook events to insurers' endpoints, with retries and a delivery log.

Signature: header ``X-Underwriting-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``,
the scheme most payment providers use: the timestamp is signed with the body so a receiver can refuse
replays older than a few minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from functools import partial

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from underwriting import tasks
from underwriting.errors import UnderwritingError
from underwriting.models import RequestStatus, UnderwritingRequest, WebhookDelivery, WebhookEndpoint
from underwriting.selectors import LARGE_REQUEST_FIELDS
from underwriting.serializers import request_public_view
from underwriting.services.dispatch import enqueue, enqueue_on_commit

EVENT_FOR_STATUS = {
    RequestStatus.COMPLETED: "request.completed",
    RequestStatus.REJECTED: "request.rejected",
    RequestStatus.UNRATED: "request.unrated",
    RequestStatus.FAILED: "request.failed",
}
SIGNATURE_HEADER = "X-Underwriting-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: str, header: str, body: bytes, *, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver does; used by the tests' receiver and offered to insurers as reference code."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


@transaction.atomic
def webhook_endpoint_create(*, insurer_id: int, url: str) -> WebhookEndpoint:
    if not url.startswith(("https://", "http://")):
        raise UnderwritingError("invalid_input", "Webhook URLs must be http(s).", fields={"url": ["Use http(s)."]})
    return WebhookEndpoint.objects.create(insurer_id=insurer_id, url=url, secret=f"whsec_{secrets.token_urlsafe(24)}")


@transaction.atomic(savepoint=False)
def webhooks_enqueue_for_request(*, request_id: uuid.UUID | str) -> list[int]:
    """:func:`webhooks_enqueue_for_requests` for one request."""
    return webhooks_enqueue_for_requests(request_ids=[request_id])


@transaction.atomic(savepoint=False)
def webhooks_enqueue_for_requests(*, request_ids: list[uuid.UUID] | list[str] | list[uuid.UUID | str]) -> list[int]:
    """Create one delivery per active endpoint for each request's terminal event. Safe to run twice.

    Called inside the transaction that makes the requests terminal; the POSTs themselves run on the
    ``webhooks`` queue once that transaction commits. A few queries whatever the number of requests.
    """
    if not request_ids:
        return []
    endpoints: dict[int, list[WebhookEndpoint]] = {}
    insurers = UnderwritingRequest.objects.filter(pk__in=request_ids).values("insurer_id")
    for endpoint in WebhookEndpoint.objects.filter(insurer_id__in=insurers, is_active=True):
        endpoints.setdefault(endpoint.insurer_id, []).append(endpoint)
    if not endpoints:
        return []  # one query when nobody listens
    requests = list(UnderwritingRequest.objects.select_related("manual").defer(*LARGE_REQUEST_FIELDS).filter(
        pk__in=request_ids, status__in=list(EVENT_FOR_STATUS), insurer_id__in=list(endpoints)
    ))  # fmt: skip
    wanted = [
        (endpoint, request, EVENT_FOR_STATUS[RequestStatus(request.status)])
        for request in requests
        for endpoint in endpoints.get(request.insurer_id, [])
    ]
    if not wanted:
        return []
    existing = set(
        WebhookDelivery.objects.filter(request_id__in=[r.pk for r in requests]).values_list(
            "endpoint_id", "request_id", "event_type"
        )
    )
    created = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(endpoint=endpoint, request=request, event_type=event, payload=_event_payload(event, request))
        for endpoint, request, event in wanted
        if (endpoint.pk, request.pk, event) not in existing
    )
    ids = [delivery.pk for delivery in created]
    for delivery_id in ids:
        enqueue_on_commit(partial(tasks.deliver_webhook.delay, delivery_id), what="webhook delivery")
    return ids


def _event_payload(event_type: str, request: UnderwritingRequest) -> dict[str, object]:
    return {
        "type": event_type,
        "created_at": timezone.now().isoformat(),
        "data": request_public_view(request),
    }


def webhook_deliver(*, delivery_id: int) -> float | None:
    """POST one delivery. Returns the delay before the next attempt, or None when done (either way)."""
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    if delivery.status != WebhookDelivery.Status.PENDING:
        return None
    body = orjson.dumps({"id": str(delivery.event_id), **delivery.payload})
    status_code, error = post_signed(delivery.endpoint, body)
    attempts = delivery.attempts + 1
    now = timezone.now()
    if status_code is not None and 200 <= status_code < 300:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.DELIVERED, attempts=attempts, last_status_code=status_code,
            last_error="", delivered_at=now, next_attempt_at=None,
        )  # fmt: skip
        return None
    if attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.FAILED, attempts=attempts, last_status_code=status_code,
            last_error=error, next_attempt_at=None,
        )  # fmt: skip
        return None
    delay: float = float(settings.WEBHOOK_RETRY_BASE_SECONDS) * 2 ** (attempts - 1)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=attempts, last_status_code=status_code, last_error=error,
        next_attempt_at=now + timedelta(seconds=delay),
    )  # fmt: skip
    return delay


def post_signed(endpoint: WebhookEndpoint, body: bytes) -> tuple[int | None, str]:
    """POST ``body`` to the endpoint, signed; returns (HTTP status or None, short error)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "underwriting-webhooks/1",
        SIGNATURE_HEADER: sign(endpoint.secret, int(time.time()), body),
    }
    http_request = urllib.request.Request(endpoint.url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(http_request, timeout=settings.WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310
            return int(response.status), ""
    except urllib.error.HTTPError as exc:
        return int(exc.code), f"HTTP {exc.code}"
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return None, exc.__class__.__name__[:200]


def webhooks_sweep() -> int:
    """Enqueue pending deliveries whose attempt is overdue (their task was lost with a broker outage).

    Deliveries are at least once: a receiver may see an event twice and dedupes by its ``id``.
    """
    overdue = timezone.now() - timedelta(seconds=settings.UNDERWRITING_STUCK_SECONDS)
    pending = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING).filter(
        Q(next_attempt_at__lt=overdue) | Q(next_attempt_at__isnull=True, created_at__lt=overdue)
    )
    count = 0
    for delivery_id in pending.values_list("pk", flat=True)[:1000]:
        WebhookDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now())
        count += enqueue(partial(tasks.deliver_webhook.delay, delivery_id), what="webhook delivery")
    return count


@transaction.atomic
def webhook_replay(*, delivery_id: int) -> WebhookDelivery:
    """Send a delivery again (bureau admin or the insurer's admin); the event id stays the same."""
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        status=WebhookDelivery.Status.PENDING, attempts=0, next_attempt_at=None
    )
    enqueue_on_commit(partial(tasks.deliver_webhook.delay, delivery_id), what="webhook delivery")
    return WebhookDelivery.objects.get(pk=delivery_id)
