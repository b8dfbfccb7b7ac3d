"""Signed webhook events to insurers' endpoints, with retries and a delivery log.

Signature: header ``X-Underwriting-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``,
the scheme most payment providers use: the timestamp is signed with the body so a receiver can refuse
replays older than a few minutes.

Endpoints are an insurer's input aimed at the bureau's network, so their URLs go through
:mod:`underwriting.netguard` when saved and again at every delivery (public addresses only, unless the bureau
allows an on-premise receiver in ``WEBHOOK_ALLOWED_PRIVATE_HOSTS``; the checked address is the one connected
to; no redirect is followed). What an insurer sees of a failed delivery is the receiver's HTTP status or one
neutral "no HTTP answer", never which of refused address, closed port, timeout or TLS failure it was: that
would make a port scanner of the delivery log. The detail is kept for the bureau's staff in ``last_error``.

Signing secrets are stored encrypted (:mod:`underwriting.webhook_secrets`) and returned in clear only by
:func:`webhook_endpoint_create` and :func:`webhook_secret_rotate`, whose callers show them once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import orjson
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.services import audit_record
from config.celery import enqueue, enqueue_on_commit
from underwriting import netguard
from underwriting.errors import UnderwritingError
from underwriting.models import RequestStatus, UnderwritingRequest, WebhookDelivery, WebhookEndpoint
from underwriting.selectors import LARGE_REQUEST_FIELDS
from underwriting.serializers import request_public_view
from underwriting.webhook_secrets import SecretUnreadableError, reseal, seal, unseal

logger = logging.getLogger(__name__)

EVENT_FOR_STATUS = {
    RequestStatus.AWAITING_CONSENT: "request.awaiting_consent",
    RequestStatus.COMPLETED: "request.completed",
    RequestStatus.REJECTED: "request.rejected",
    RequestStatus.UNRATED: "request.unrated",
    RequestStatus.FAILED: "request.failed",
}
SIGNATURE_HEADER = "X-Underwriting-Signature"
DELIVER = "underwriting.tasks.deliver_webhook"  # by name: services do not import the task modules


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


# --- endpoints ----------------------------------------------------------------------------------------


def allowed_receivers() -> netguard.AllowList:
    """The on-premise receivers the bureau allows (``WEBHOOK_ALLOWED_PRIVATE_HOSTS``)."""
    try:
        return netguard.AllowList.parse(settings.WEBHOOK_ALLOWED_PRIVATE_HOSTS)
    except ValueError as exc:
        raise ImproperlyConfigured(f"WEBHOOK_ALLOWED_PRIVATE_HOSTS: {exc}") from None


def _refusal_message(code: str) -> str:
    messages = {
        "scheme": _("Use an https:// (or http://) URL."),
        "userinfo": _("Remove the user name and password from the URL: events are signed, the receiver needs none."),
        "ip_spelling": _(
            "Write an IP address in its usual form (203.0.113.7, or [2001:db8::7] for IPv6), or use a host name."
        ),
        "port": _("Use a port number from 1 to 65535."),
        "cleartext": _(
            "Use an https:// URL: results leave the bureau only encrypted. Plain http:// is for on-premise "
            "receivers the bureau has allowed."
        ),
        # One message whether the host is internal, resolves to an internal address or does not resolve at
        # all: a different answer would tell an insurer which names exist in the bureau's own network.
        "address": _(
            "Use a host on the public internet: this one is not, or could not be verified. "
            "An on-premise receiver must first be allowed by the bureau."
        ),
    }  # fmt: skip
    return messages.get(code, _("Enter a valid URL."))


def webhook_url_check(*, url: str) -> netguard.Target:
    """Refuse a URL webhooks may not be sent to (raises ``invalid_input`` with a message for ``url``).

    Resolves the host: call it outside a transaction. The same checks run again at every delivery."""
    try:
        target = netguard.parse_url(url)
        _require_tls(target, netguard.addresses_for(target, allowed_receivers()))
    except netguard.RefusedURLError as exc:
        logger.info("webhook URL refused (%s): %s", exc.code, exc.detail)
        message = _refusal_message(exc.code)
        raise UnderwritingError("invalid_input", message, fields={"url": [message]}) from None
    return target


def _require_tls(target: netguard.Target, addresses: list[netguard.IPAddress]) -> None:
    """Tiers travel to public receivers over https only (WEBHOOK_REQUIRE_HTTPS); plain http is left to
    receivers the bureau allowed on its own network."""
    if target.scheme != "http" or not settings.WEBHOOK_REQUIRE_HTTPS:
        return
    allow = allowed_receivers()
    if not all(allow.permits(target.host, address) for address in addresses):
        raise netguard.RefusedURLError("cleartext", "plain http to a receiver the bureau has not allowed")


def _new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def webhook_endpoint_create(
    *, insurer_id: int, url: str, actor: str = "", is_active: bool = True
) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint and return it with the only clear copy of its signing secret (show it once)."""
    target = webhook_url_check(url=url)
    secret = _new_secret()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            insurer_id=insurer_id, url=url, is_active=is_active, secret_encrypted=seal(secret),
            secret_rotated_at=timezone.now(),
        )  # fmt: skip
        _audit_endpoint("webhook.endpoint_create", endpoint, actor=actor, host=target.host)
    return endpoint, secret


def webhook_endpoint_update(
    *, endpoint_id: int, url: str | None = None, is_active: bool | None = None, actor: str = ""
) -> None:
    """Change an endpoint's URL (checked like a new one) and/or pause or resume it (bureau admin)."""
    changes: dict[str, object] = {}
    host = ""
    if url is not None:
        host = webhook_url_check(url=url).host
        changes["url"] = url
    if is_active is not None:
        changes["is_active"] = is_active
    with transaction.atomic():
        WebhookEndpoint.objects.filter(pk=endpoint_id).update(**changes)
        endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
        _audit_endpoint("webhook.endpoint_update", endpoint, actor=actor, host=host)


@transaction.atomic
def webhook_secret_rotate(*, endpoint_id: int, actor: str = "") -> str:
    """Replace an endpoint's signing secret and return the new one in clear (show it once). Deliveries are
    signed with the new secret from now on, retries of older events included."""
    secret = _new_secret()
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(
        secret_encrypted=seal(secret), secret_rotated_at=timezone.now()
    )
    _audit_endpoint("webhook.secret_rotate", WebhookEndpoint.objects.get(pk=endpoint_id), actor=actor)
    return secret


def webhook_secrets_reencrypt() -> int:
    """Encrypt every stored signing secret under the current key (after ``WEBHOOK_SECRET_KEY`` changed and
    the old value went to ``WEBHOOK_SECRET_KEY_FALLBACKS``). Returns how many were rewritten."""
    count = 0
    for endpoint_id, token in list(WebhookEndpoint.objects.values_list("pk", "secret_encrypted")):
        count += WebhookEndpoint.objects.filter(pk=endpoint_id, secret_encrypted=token).update(
            secret_encrypted=reseal(token)
        )
    return count


def webhook_endpoint_secret(endpoint: WebhookEndpoint) -> str:
    """The endpoint's signing secret in clear, to sign with. Raises SecretUnreadableError without the key."""
    return unseal(endpoint.secret_encrypted)


def _audit_endpoint(action: str, endpoint: WebhookEndpoint, *, actor: str, host: str = "") -> None:
    detail: dict[str, object] = {"insurer_id": endpoint.insurer_id, "active": endpoint.is_active}
    if host:
        detail["host"] = host
    audit_record(
        action=action, actor=actor or f"insurer:{endpoint.insurer_id}", target_type="webhook_endpoint",
        target_id=str(endpoint.pk), detail=detail,
    )  # fmt: skip


# --- deliveries -------------------------------------------------------------------------------------


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
    # Only the columns the domain zone may read: it enqueues, it never signs (ops/db_zones.py).
    active = WebhookEndpoint.objects.filter(insurer_id__in=insurers, is_active=True).only("id", "insurer_id")
    for endpoint in active.order_by():
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
        enqueue_on_commit(DELIVER, delivery_id, what="webhook delivery")
    return ids


def _event_payload(event_type: str, request: UnderwritingRequest) -> dict[str, object]:
    return {
        "type": event_type,
        "created_at": timezone.now().isoformat(),
        "data": request_public_view(request),
    }


def webhook_deliver(*, delivery_id: int) -> float | None:
    """POST one delivery. Returns the delay before the next attempt, or None when done (either way).

    Every failure without a 2xx, refused address and redirect included, takes the same retries, so neither
    the outcome nor its schedule tells the insurer more than "no HTTP answer" or the status it got."""
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    if delivery.status != WebhookDelivery.Status.PENDING:
        return None
    body = orjson.dumps({"id": str(delivery.event_id), **delivery.payload})
    result = post_signed(delivery.endpoint, body)
    status_code, error = result.status_code, result.detail
    attempts = delivery.attempts + 1
    now = timezone.now()
    if result.ok:
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


@dataclass(frozen=True)
class PostResult:
    status_code: int | None  # the receiver's HTTP status; None when no HTTP answer came
    detail: str  # why it failed, for the bureau's staff only (never shown to the insurer)

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post_signed(endpoint: WebhookEndpoint, body: bytes) -> PostResult:
    """POST ``body`` to the endpoint, signed, if its URL still passes the checks once resolved now."""
    try:
        target = netguard.parse_url(endpoint.url)
        addresses = netguard.addresses_for(target, allowed_receivers())
        _require_tls(target, addresses)
    except netguard.RefusedURLError as exc:
        # Checked when saved, so this is a name that now resolves elsewhere (DNS rebinding) or a list the
        # bureau narrowed: worth a look by staff.
        logger.warning("webhook endpoint %s refused at delivery (%s): %s", endpoint.pk, exc.code, exc.detail)
        return PostResult(None, f"refused: {exc.detail}"[:200])
    try:
        secret = webhook_endpoint_secret(endpoint)
    except SecretUnreadableError:
        logger.error("webhook endpoint %s: signing secret unreadable (WEBHOOK_SECRET_KEY)", endpoint.pk)
        return PostResult(None, "signing secret unreadable: check WEBHOOK_SECRET_KEY and its fallbacks")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "underwriting-webhooks/1",
        SIGNATURE_HEADER: sign(secret, int(time.time()), body),
    }
    try:
        status = netguard.post(
            target, addresses, body=body, headers=headers, timeout=float(settings.WEBHOOK_TIMEOUT_SECONDS)
        )
    except netguard.DeliveryError as exc:
        logger.info("webhook endpoint %s gave no HTTP answer: %s", endpoint.pk, exc)
        return PostResult(None, str(exc)[:200])
    if 200 <= status < 300:
        return PostResult(status, "")
    if 300 <= status < 400:
        return PostResult(status, f"HTTP {status}: redirects are not followed")
    return PostResult(status, f"HTTP {status}")


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
        count += enqueue(DELIVER, delivery_id, what="webhook delivery")
    return count


@transaction.atomic
def webhook_replay(*, delivery_id: int) -> WebhookDelivery:
    """Send a delivery again (bureau admin or the insurer's admin); the event id stays the same."""
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        status=WebhookDelivery.Status.PENDING, attempts=0, next_attempt_at=None
    )
    enqueue_on_commit(DELIVER, delivery_id, what="webhook delivery")
    return WebhookDelivery.objects.get(pk=delivery_id)
