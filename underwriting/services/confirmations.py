"""The resident's own confirmation of a request (consent mode ``resident``, ConsentPolicy).

A request in ``awaiting_consent`` moves on only through these services: approved by the resident it is
named for (on to ``extracting``, with the confirmation recorded as consent evidence in the data domain),
declined (``rejected``, ``consent_declined``) or left until it expires (``rejected``,
``consent_expired``, by the sweeper). Every change is a guarded transition, writes the audit log with the
subject's pseudonymous key only, and sends the insurer's webhooks.

Who may decide: the caller passes the subject key the resident signed in as (residents.views); a request
about anyone else, or one the identity check did not match (``reachable`` False), is not found, exactly
like a request that does not exist. No insurer-facing path calls these.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

import orjson
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record, subject_ref
from datadomain import residents as domain_residents
from datadomain import services as domain
from underwriting.errors import UnderwritingError
from underwriting.models import ConsentConfirmation, ConsentPolicy, RejectReason, RequestStatus, UnderwritingRequest
from underwriting.services.dispatch import stage_wake_on_commit
from underwriting.services.state import transition, transition_many
from underwriting.services.webhooks import webhooks_enqueue_for_requests

# How many expired confirmations the sweeper settles in one transaction.
EXPIRE_CHUNK = 500


def _not_found() -> UnderwritingError:
    return UnderwritingError("not_found", "No such request awaits your decision.")


def _pending_for(*, request_id: uuid.UUID | str, subject_key: str, now: datetime) -> ConsentConfirmation:
    try:
        request_id = uuid.UUID(str(request_id))
    except ValueError:
        raise _not_found() from None
    confirmation = (
        ConsentConfirmation.objects.select_for_update()
        .select_related("request", "request__insurer")
        .filter(
            request_id=request_id,
            subject_key=subject_key,
            reachable=True,
            status=ConsentConfirmation.Status.PENDING,
            expires_at__gt=now,
            request__status=RequestStatus.AWAITING_CONSENT,
        )
        .first()
    )
    if confirmation is None:
        raise _not_found()
    return confirmation


@transaction.atomic
def confirmation_approve(*, request_id: uuid.UUID | str, subject_key: str) -> UnderwritingRequest:
    """The resident approves: their confirmation becomes the request's consent record and the request
    goes on to extraction. Raises ``not_found`` for anything but the signed-in resident's own pending one."""
    now = timezone.now()
    confirmation = _pending_for(request_id=request_id, subject_key=subject_key, now=now)
    request = confirmation.request
    consent_id = _record_consent(confirmation, now)
    if not transition(
        request.pk,
        from_status=RequestStatus.AWAITING_CONSENT,
        to_status=RequestStatus.EXTRACTING,
        consent_id=consent_id,
    ):
        raise _not_found()
    _decide(confirmation, ConsentConfirmation.Status.APPROVED, now)
    stage_wake_on_commit("extract")
    request.refresh_from_db()
    return request


def _record_consent(confirmation: ConsentConfirmation, now: datetime) -> int:
    """The evidence of a resident's confirmation: what was shown and when, hashed like a signed form."""
    request = confirmation.request
    statement = {
        "request": str(request.pk),
        "subject": request.subject_key,
        "insurer": request.insurer.slug,
        "manual": request.manual_slug,
        "purpose": "underwriting",
        "confirmed_at": now.isoformat(),
    }
    digest = hashlib.sha256(orjson.dumps(statement, option=orjson.OPT_SORT_KEYS)).hexdigest()
    [recorded] = domain.consent_record_many(
        insurer_slug=request.insurer.slug,
        evidence=[
            (
                request.subject_key,
                domain.ConsentEvidence(
                    reference=f"{domain_residents.RESIDENT_REFERENCE_PREFIX}{request.pk}",
                    signed_at=now,
                    expires_at=None,
                    scope=["underwriting"],
                    artifact_sha256=digest,
                ),
            )
        ],
    )
    if isinstance(recorded, Exception):
        raise recorded
    return recorded.consent_id


@transaction.atomic
def confirmation_decline(*, request_id: uuid.UUID | str, subject_key: str) -> UnderwritingRequest:
    """The resident declines: the request is rejected (``consent_declined``) and the insurer told."""
    now = timezone.now()
    confirmation = _pending_for(request_id=request_id, subject_key=subject_key, now=now)
    request = confirmation.request
    if not transition(
        request.pk,
        from_status=RequestStatus.AWAITING_CONSENT,
        to_status=RequestStatus.REJECTED,
        reason=RejectReason.CONSENT_DECLINED,
    ):
        raise _not_found()
    _decide(confirmation, ConsentConfirmation.Status.DECLINED, now)
    webhooks_enqueue_for_requests(request_ids=[request.pk])
    request.refresh_from_db()
    return request


def _decide(confirmation: ConsentConfirmation, status: str, now: datetime) -> None:
    ConsentConfirmation.objects.filter(pk=confirmation.pk, status=ConsentConfirmation.Status.PENDING).update(
        status=status, decided_at=now
    )
    audit_record(
        action=f"consent.resident_{status}",
        actor="resident",
        target_type="underwriting_request",
        target_id=str(confirmation.request_id),
        detail={"subject": subject_ref(confirmation.subject_key)},
    )


def confirmations_expire(*, now: datetime | None = None) -> int:
    """Reject every request whose confirmation window has passed (``consent_expired``), a chunk per
    transaction; safe to run twice and beside a resident's decision (both are guarded). Unreachable
    confirmations (unknown ID, wrong name) end here too, at the same time as unanswered ones."""
    now = now or timezone.now()
    total = 0
    while True:
        with transaction.atomic():
            due = list(
                ConsentConfirmation.objects.select_for_update(skip_locked=True)
                .filter(status=ConsentConfirmation.Status.PENDING, expires_at__lte=now)
                # Not the model's ordering (created_at): the scoring zone, which runs the sweeper, may read
                # only request_id, status and expires_at here (ops/db_zones.py).
                .order_by("expires_at")
                .values_list("request_id", flat=True)[:EXPIRE_CHUNK]
            )
            if not due:
                return total
            moved = transition_many(
                {pk: {} for pk in due},
                from_status=RequestStatus.AWAITING_CONSENT,
                to_status=RequestStatus.REJECTED,
                reason=RejectReason.CONSENT_EXPIRED,
            )
            ConsentConfirmation.objects.filter(request_id__in=due, status=ConsentConfirmation.Status.PENDING).update(
                status=ConsentConfirmation.Status.EXPIRED, decided_at=now
            )
            webhooks_enqueue_for_requests(request_ids=moved)
            total += len(moved)
        if len(due) < EXPIRE_CHUNK:
            return total


@transaction.atomic
def consent_policy_set(*, insurer_id: int, mode: str, confirmation_hours: int, actor: str) -> None:
    """The bureau sets how an insurer proves consent (admin); audited. Requests already made keep theirs."""
    ConsentPolicy.objects.update_or_create(
        insurer_id=insurer_id,
        defaults={"mode": mode, "confirmation_hours": confirmation_hours, "updated_by": actor[:150]},
    )
    audit_record(
        action="consent.policy_set",
        actor=actor,
        target_type="insurer",
        target_id=str(insurer_id),
        detail={"mode": mode, "confirmation_hours": confirmation_hours},
    )
