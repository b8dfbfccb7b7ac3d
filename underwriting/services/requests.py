from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import Event, audit_record_many, subject_ref
from datadomain import keyring
from datadomain import services as domain
from datadomain.errors import DomainError
from underwriting import selectors, tasks
from underwriting.errors import UnderwritingError
from underwriting.models import RatingManual, RejectReason, RequestEvent, RequestStatus, UnderwritingRequest
from underwriting.services.dispatch import enqueue_on_commit
from underwriting.services.overrides import override_use
from underwriting.services.state import transition
from underwriting.services.webhooks import webhooks_enqueue_for_request


@dataclass(frozen=True)
class Applicant:
    resident_id: str
    name: str


@dataclass(frozen=True)
class ConsentEvidence:
    reference: str
    signed_at: datetime
    expires_at: datetime | None
    scope: list[str]
    artifact_sha256: str


def body_fingerprint(body: dict[str, Any]) -> str:
    """A stable hash of a request body, to tell a replay (same key, same body) from a conflict."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def request_date(now: datetime | None = None) -> date:
    """The request date in the bureau's time zone (Asia/Shanghai): age points use it."""
    return timezone.localdate(now or timezone.now())


def request_submit(
    *,
    insurer_id: int,
    insurer_slug: str,
    reference: str,
    applicant: Applicant,
    manual_slug: str,
    consent: ConsentEvidence,
    idempotency_key: str = "",
    body_sha256: str = "",
    api_key_id: int | None = None,
) -> tuple[UnderwritingRequest, bool]:
    """Accept a request, verify it in the domain and queue its scoring. Returns (request, created).

    Identity is checked here, inside the domain, so the applicant's name and resident ID never travel
    through the broker or land on the request row (only the subject key and a masked ID do).
    """
    if idempotency_key:
        existing = UnderwritingRequest.objects.filter(insurer_id=insurer_id, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _replay(existing, body_sha256), False
    if not domain.resident_id_is_valid(applicant.resident_id):
        raise UnderwritingError(
            "invalid_input", "The request has invalid fields.", fields={"applicant.resident_id": ["Not a valid ID."]}
        )
    resident_id = domain.resident_id_normalise(applicant.resident_id)
    try:
        with transaction.atomic():
            request = UnderwritingRequest.objects.create(
                insurer_id=insurer_id,
                reference=reference,
                api_key_id=api_key_id,
                idempotency_key=idempotency_key,
                body_sha256=body_sha256,
                subject_key=domain.subject_key_for(resident_id),
                resident_id_masked=domain.mask_resident_id(resident_id),
                manual_slug=manual_slug,
                as_of=request_date(),
                status=RequestStatus.VERIFYING,  # received and verified in this one transaction
            )
            RequestEvent.objects.bulk_create(
                [
                    RequestEvent(request=request, to_status=RequestStatus.RECEIVED),
                    RequestEvent(
                        request=request, from_status=RequestStatus.RECEIVED, to_status=RequestStatus.VERIFYING
                    ),
                ]
            )
            audit_record_many(_submitted_events(request))
            _verify(request, insurer_slug=insurer_slug, applicant=applicant, consent=consent)
    except IntegrityError:
        # Two submissions with the same idempotency key raced; the other one won.
        existing = UnderwritingRequest.objects.get(insurer_id=insurer_id, idempotency_key=idempotency_key)
        return _replay(existing, body_sha256), False
    return selectors.request_as_submitted(request.pk), True


def _submitted_events(request: UnderwritingRequest) -> list[Event]:
    kind, pk = "underwriting_request", str(request.pk)
    received = {
        "insurer_id": request.insurer_id,
        "manual": request.manual_slug,
        "subject": subject_ref(request.subject_key),
    }
    return [
        Event("request.received", f"insurer:{request.insurer_id}", kind, pk, received),
        Event("request.transition", "", kind, pk, {"from": "received", "to": "verifying", "reason": ""}),
    ]


def _replay(existing: UnderwritingRequest, body_sha256: str) -> UnderwritingRequest:
    if existing.body_sha256 != body_sha256:
        raise UnderwritingError(
            "idempotency_conflict", "This Idempotency-Key was already used with a different request body."
        )
    return existing


def _verify(request: UnderwritingRequest, *, insurer_slug: str, applicant: Applicant, consent: ConsentEvidence) -> None:
    manual = selectors.manual_for_use(slug=request.manual_slug, insurer_slug=insurer_slug)
    outcome = _verification_outcome(
        request, manual=manual, insurer_slug=insurer_slug, applicant=applicant, consent=consent
    )
    verifying = RequestStatus.VERIFYING
    if outcome is None:
        assert manual is not None  # checked by _verification_outcome
        thresholds = selectors.manual_document(manual).thresholds
        domain.comparison_grant_create(
            request_ref=str(request.pk), budget=len(thresholds), key_id=keyring.active_key_id() or ""
        )
        transition(
            request.pk, from_status=verifying, to_status=RequestStatus.EXTRACTING, manual=manual,
            consent_id=request.consent_id,
        )  # fmt: skip
        enqueue_on_commit(partial(tasks.extract_features.delay, str(request.pk)), what="extraction")
    elif outcome == RequestStatus.UNRATED:
        transition(request.pk, from_status=verifying, to_status=RequestStatus.UNRATED)
    else:
        transition(
            request.pk, from_status=verifying, to_status=RequestStatus.REJECTED, reason=outcome,
            consent_id=request.consent_id,
        )  # fmt: skip
    if outcome is not None:
        webhooks_enqueue_for_request(request_id=request.pk)


def _verification_outcome(
    request: UnderwritingRequest,
    *,
    manual: RatingManual | None,
    insurer_slug: str,
    applicant: Applicant,
    consent: ConsentEvidence,
) -> str | None:
    """None when the request may proceed; otherwise a rejection reason or ``unrated``.

    Order matters: the manual first (cheap, no personal data), then identity, consent and rate limit.
    """
    if manual is None:
        return RejectReason.MANUAL_NOT_APPROVED
    try:
        identity = domain.identity_check(resident_id=applicant.resident_id, name=applicant.name)
    except DomainError:
        return RejectReason.INVALID_INPUT
    if identity.outcome == "unknown":
        return RequestStatus.UNRATED
    if identity.outcome != "matched":
        return RejectReason.IDENTITY_MISMATCH
    try:
        consent_id = domain.consent_record(
            insurer_slug=insurer_slug,
            subject_key=request.subject_key,
            reference=consent.reference,
            signed_at=consent.signed_at,
            expires_at=consent.expires_at,
            scope=consent.scope,
            artifact_sha256=consent.artifact_sha256,
        )
    except DomainError:
        # Malformed evidence, or a reference reused with different evidence (evidence is immutable).
        return RejectReason.INVALID_INPUT
    request.consent_id = consent_id  # saved with the request's next transition
    if not domain.consent_is_valid(consent_id=consent_id, purpose="underwriting", at=timezone.now()):
        return RejectReason.CONSENT_INVALID
    if _rate_limited(request):
        return RejectReason.RATE_LIMITED
    return None


def _rate_limited(request: UnderwritingRequest) -> bool:
    """At most N requests per (insurer, subject) in a sliding window bound what repeated requests reveal;
    past it, only a live override granted by bureau staff lets a request through (and spends one use)."""
    window = timedelta(days=settings.UNDERWRITING_RATE_LIMIT_DAYS)
    earlier = (
        UnderwritingRequest.objects.filter(
            insurer_id=request.insurer_id,
            subject_key=request.subject_key,
            created_at__gte=timezone.now() - window,
        )
        .exclude(pk=request.pk)
        .exclude(status=RequestStatus.REJECTED)
        .count()
    )
    if earlier < int(settings.UNDERWRITING_RATE_LIMIT_COUNT):
        return False
    return override_use(request=request) is None
