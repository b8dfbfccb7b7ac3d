"""Rate-limit overrides: a bureau officer lets an insurer underwrite one subject again past the limit.

The rate limit per (insurer, subject) bounds what repeated requests reveal about a person, so every
exception to it is granted by a named officer with a reason and an expiry, used at most ``allowance``
times, and both the grant and each use are written to the audit log.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from audit.services import audit_record, subject_ref
from underwriting.errors import UnderwritingError
from underwriting.models import RateLimitOverride, UnderwritingRequest

MAX_OVERRIDE_DAYS = 30
MAX_ALLOWANCE = 10


def override_check(*, reason: str, expires_at: datetime, allowance: int) -> None:
    """Raise UnderwritingError unless the override has a reason, a near expiry and a small allowance."""
    now = timezone.now()
    if not reason.strip():
        raise UnderwritingError("invalid_input", "An override needs a reason.", fields={"reason": ["Required."]})
    if not now < expires_at <= now + timedelta(days=MAX_OVERRIDE_DAYS):
        raise UnderwritingError(
            "invalid_input",
            f"The expiry must be within the next {MAX_OVERRIDE_DAYS} days.",
            fields={"expires_at": [f"Within the next {MAX_OVERRIDE_DAYS} days."]},
        )
    if not 1 <= allowance <= MAX_ALLOWANCE:
        raise UnderwritingError(
            "invalid_input",
            f"Allow between 1 and {MAX_ALLOWANCE} extra requests.",
            fields={"allowance": [f"Between 1 and {MAX_ALLOWANCE}."]},
        )


@transaction.atomic
def override_grant(
    *,
    insurer_id: int,
    subject_key: str,
    reason: str,
    expires_at: datetime,
    granted_by: User,
    allowance: int = 1,
) -> RateLimitOverride:
    """Grant ``allowance`` requests past the rate limit for (insurer, subject) until ``expires_at``."""
    override_check(reason=reason, expires_at=expires_at, allowance=allowance)
    if len(subject_key) != 64:
        raise UnderwritingError("invalid_input", "Not a subject key.")
    override = RateLimitOverride.objects.create(
        insurer_id=insurer_id, subject_key=subject_key, reason=reason.strip(), allowance=allowance,
        expires_at=expires_at, granted_by=granted_by,
    )  # fmt: skip
    audit_record(
        action="rate_limit_override.grant",
        actor=granted_by.get_username(),
        target_type="rate_limit_override",
        target_id=str(override.pk),
        detail={
            "insurer_id": insurer_id,
            "subject": subject_ref(subject_key),
            "allowance": allowance,
            "expires_at": expires_at.isoformat(),
            "reason": override.reason,
        },
    )
    return override


def override_grant_for_request(
    *, request_id: str, reason: str, expires_at: datetime, granted_by: User, allowance: int = 1
) -> RateLimitOverride:
    """An override for the insurer and subject of an existing request (staff never type a resident ID)."""
    request = UnderwritingRequest.objects.filter(pk=request_id).values("insurer_id", "subject_key").first()
    if request is None:
        raise UnderwritingError("not_found", "No such request.")
    return override_grant(
        insurer_id=request["insurer_id"], subject_key=request["subject_key"], reason=reason,
        expires_at=expires_at, granted_by=granted_by, allowance=allowance,
    )  # fmt: skip


@transaction.atomic(savepoint=False)  # part of the submission's transaction: rolled back with it
def override_use(*, request: UnderwritingRequest) -> RateLimitOverride | None:
    """Spend one use of a live override for the request's (insurer, subject); None when there is none.

    A guarded UPDATE (``used < allowance``) spends it, so two concurrent requests never both use the
    last allowance."""
    candidates = RateLimitOverride.objects.filter(
        insurer_id=request.insurer_id,
        subject_key=request.subject_key,
        expires_at__gt=timezone.now(),
        used__lt=F("allowance"),
    ).order_by("expires_at", "id")
    for override in candidates:
        if RateLimitOverride.objects.filter(pk=override.pk, used__lt=F("allowance")).update(used=F("used") + 1):
            audit_record(
                action="rate_limit_override.use",
                actor=f"insurer:{request.insurer_id}",
                target_type="rate_limit_override",
                target_id=str(override.pk),
                detail={"request": str(request.pk), "subject": subject_ref(request.subject_key)},
            )
            return override
    return None
