"""Guarded state transitions of an underwriting request.

Each transition is one UPDATE guarded by the expected current status. Zero rows updated means another
worker got there first (or the request is already terminal): that is normal, never an error, and it is
what makes every task safe to run twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import Case, F, Field, Value, When
from django.utils import timezone

from audit.services import Event, audit_record_many
from underwriting.models import TERMINAL_STATUSES, RequestEvent, RequestStatus, UnderwritingRequest
from underwriting.services.notify import announce_terminal

ALLOWED = {
    RequestStatus.RECEIVED: {RequestStatus.VERIFYING},  # request_submit creates requests as verifying
    RequestStatus.VERIFYING: {
        RequestStatus.EXTRACTING,
        RequestStatus.AWAITING_CONSENT,
        RequestStatus.REJECTED,
        RequestStatus.UNRATED,
    },
    # The resident approves (on to extraction), declines or lets it expire (rejected): services/confirmations.
    RequestStatus.AWAITING_CONSENT: {RequestStatus.EXTRACTING, RequestStatus.REJECTED},
    # Extraction checks the request's consent again and stops it if it was withdrawn meanwhile.
    RequestStatus.EXTRACTING: {RequestStatus.SCORING, RequestStatus.REJECTED},
    RequestStatus.SCORING: {RequestStatus.TIERING},
    RequestStatus.TIERING: {RequestStatus.COMPLETED},
}


@transaction.atomic(savepoint=False)  # part of the caller's transaction; a savepoint would buy nothing
def transition(request_id: uuid.UUID, *, from_status: str, to_status: str, reason: str = "", **fields: Any) -> bool:
    """Move the request from ``from_status`` to ``to_status``; False if it was not in ``from_status``."""
    return bool(transition_many({request_id: fields}, from_status=from_status, to_status=to_status, reason=reason))


@transaction.atomic(savepoint=False)
def transition_many(
    changes: Mapping[uuid.UUID, Mapping[str, Any]], *, from_status: str, to_status: str, reason: str = ""
) -> list[uuid.UUID]:
    """Move each request in ``changes`` that is still in ``from_status`` to ``to_status``, setting its own
    fields; returns the ids that moved. One UPDATE, one INSERT of events and one of audit entries for the
    lot: the pipeline's stages move a chunk of requests at a time."""
    if to_status != RequestStatus.FAILED and to_status not in ALLOWED.get(RequestStatus(from_status), set()):
        raise ValueError(f"transition {from_status} -> {to_status} is not part of the lifecycle")
    if not changes:
        return []
    now = timezone.now()
    common: dict[str, Any] = {"status": to_status, "reason": reason, "updated_at": now}
    if to_status in TERMINAL_STATUSES:
        common.update(completed_at=now)
    ids = list(changes)
    rows = UnderwritingRequest.objects.filter(pk__in=ids, status=from_status)
    updated = rows.update(**{**common, **_per_row(changes)})
    if updated != len(ids):  # some had moved on: find out which ones this update moved
        ids = list(
            UnderwritingRequest.objects.filter(pk__in=ids, status=to_status, updated_at=now).values_list(
                "pk", flat=True
            )
        )
    if not ids:
        return []
    RequestEvent.objects.bulk_create(
        RequestEvent(request_id=pk, from_status=from_status, to_status=to_status, reason=reason) for pk in ids
    )
    detail = {"from": str(from_status), "to": str(to_status), "reason": reason}
    audit_record_many(Event("request.transition", "", "underwriting_request", str(pk), detail) for pk in ids)
    if to_status in TERMINAL_STATUSES:
        announce_terminal(*ids)
    return ids


def _per_row(changes: Mapping[uuid.UUID, Mapping[str, Any]]) -> dict[str, Any]:
    """UPDATE values: the one value of a field every row sets alike, else a CASE on the primary key."""
    names = {name for fields in changes.values() for name in fields}
    values: dict[str, Any] = {}
    for name in names:
        given = [fields.get(name, _UNSET) for fields in changes.values()]
        if all(value is not _UNSET and value == given[0] for value in given):
            values[name] = given[0]
            continue
        field = UnderwritingRequest._meta.get_field(name)
        assert isinstance(field, Field)  # a concrete column, not a reverse relation
        whens = [
            When(pk=pk, then=Value(fields[name], output_field=field))
            for pk, fields in changes.items()
            if name in fields
        ]
        values[name] = Case(*whens, default=F(name), output_field=field)
    return values


_UNSET = object()


def fail(request_id: uuid.UUID) -> bool:
    """Move a request that is not yet terminal to ``failed``."""
    current = UnderwritingRequest.objects.filter(pk=request_id).values_list("status", flat=True).first()
    if current is None or current in TERMINAL_STATUSES:
        return False
    return transition(request_id, from_status=current, to_status=RequestStatus.FAILED)
