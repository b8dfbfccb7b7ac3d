"""Guarded state transitions of an underwriting request.

Each transition is one UPDATE guarded by the expected current status. Zero rows updated means another
worker got there first (or the request is already terminal): that is normal, never an error, and it is
what makes every task safe to run twice.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from underwriting.models import TERMINAL_STATUSES, RequestEvent, RequestStatus, UnderwritingRequest
from underwriting.services.notify import announce_terminal

ALLOWED = {
    RequestStatus.RECEIVED: {RequestStatus.VERIFYING},  # request_submit creates requests as verifying
    RequestStatus.VERIFYING: {RequestStatus.EXTRACTING, RequestStatus.REJECTED, RequestStatus.UNRATED},
    RequestStatus.EXTRACTING: {RequestStatus.SCORING},
    RequestStatus.SCORING: {RequestStatus.TIERING, RequestStatus.EXTRACTING},
    RequestStatus.TIERING: {RequestStatus.COMPLETED},
}


@transaction.atomic(savepoint=False)  # part of the caller's transaction; a savepoint would buy nothing
def transition(request_id: uuid.UUID, *, from_status: str, to_status: str, reason: str = "", **fields: Any) -> bool:
    """Move the request from ``from_status`` to ``to_status``; False if it was not in ``from_status``."""
    if to_status != RequestStatus.FAILED and to_status not in ALLOWED.get(RequestStatus(from_status), set()):
        raise ValueError(f"transition {from_status} -> {to_status} is not part of the lifecycle")
    now = timezone.now()
    if to_status in TERMINAL_STATUSES:
        fields.setdefault("completed_at", now)
        fields.setdefault("tiering_state", None)
    updated = UnderwritingRequest.objects.filter(pk=request_id, status=from_status).update(
        status=to_status, reason=reason, updated_at=now, **fields
    )
    if updated:
        RequestEvent.objects.create(request_id=request_id, from_status=from_status, to_status=to_status, reason=reason)
        audit_record(
            action="request.transition",
            target_type="underwriting_request",
            target_id=str(request_id),
            detail={"from": str(from_status), "to": str(to_status), "reason": reason},
        )
        if to_status in TERMINAL_STATUSES:
            announce_terminal(request_id)
    return bool(updated)


def fail(request_id: uuid.UUID) -> bool:
    """Move a request that is not yet terminal to ``failed``."""
    current = UnderwritingRequest.objects.filter(pk=request_id).values_list("status", flat=True).first()
    if current is None or current in TERMINAL_STATUSES:
        return False
    return transition(request_id, from_status=current, to_status=RequestStatus.FAILED)
