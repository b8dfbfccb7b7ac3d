"""Guarded state transitions of an underwriting request.

Each transition is one UPDATE guarded by the expected current status. Zero rows updated means another
worker got there first (or the request is already terminal): that is normal, never an error, and it is
what makes every task safe to run twice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, F, Field, Value, When
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import AUDIT_INSERT_COLUMNS, Event, audit_record_many
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
    fields; returns the ids that moved, in the order of ``changes``. On PostgreSQL one statement for the
    lot (the UPDATE and the INSERTs of its events and audit entries); elsewhere one UPDATE and one INSERT
    of each. The pipeline's stages move a chunk of requests at a time."""
    if to_status != RequestStatus.FAILED and to_status not in ALLOWED.get(RequestStatus(from_status), set()):
        raise ValueError(f"transition {from_status} -> {to_status} is not part of the lifecycle")
    if not changes:
        return []
    now = timezone.now()
    common: dict[str, Any] = {"status": to_status, "reason": reason, "updated_at": now}
    if to_status in TERMINAL_STATUSES:
        common.update(completed_at=now)
    values = {**common, **_per_row(changes)}
    if connection.vendor == "postgresql":
        ids = _transition_statement(
            changes, values, from_status=from_status, to_status=to_status, reason=reason, now=now
        )
    else:
        ids = _transition_orm(changes, values, from_status=from_status, to_status=to_status, reason=reason, now=now)
    if ids and to_status in TERMINAL_STATUSES:
        announce_terminal(*ids)
    return ids


def _transition_statement(
    changes: Mapping[uuid.UUID, Mapping[str, Any]], values: dict[str, Any], *, from_status: str, to_status: str,
    reason: str, now: datetime,
) -> list[uuid.UUID]:  # fmt: skip
    """PostgreSQL: the guarded UPDATE, the events and the audit entries in one statement (the two INSERTs
    read the UPDATE's RETURNING rows), so the rows that moved are known without a second read and a
    chunk's transition is one round trip."""
    query = UpdateQuery(UnderwritingRequest)
    compiler = query.get_compiler(connection=connection)
    quote = connection.ops.quote_name
    sets: list[str] = []
    params: list[Any] = []
    for name, value in values.items():
        field = UnderwritingRequest._meta.get_field(name)
        assert isinstance(field, Field)  # a concrete column, not a reverse relation
        assert field.column
        if hasattr(value, "resolve_expression"):  # a CASE on the primary key (_per_row)
            sql, more = compiler.compile(value.resolve_expression(query, allow_joins=False, for_save=True))
            sets.append(f"{quote(field.column)} = {sql}")
            params += more
        else:
            sets.append(f"{quote(field.column)} = %s")
            params.append(field.get_db_prep_save(value, connection))
    detail = json.dumps({"from": str(from_status), "to": str(to_status), "reason": reason})
    params += [[str(pk) for pk in changes], from_status, from_status, to_status, reason, now, now, detail]
    with connection.cursor() as cursor:
        cursor.execute(_statement_sql(", ".join(sets)), params)
        moved = {_uuid(pk) for (pk,) in cursor.fetchall()}
    return [pk for pk in changes if _uuid(pk) in moved]


def _statement_sql(sets: str) -> str:
    request, event, entry = (model._meta.db_table for model in (UnderwritingRequest, RequestEvent, AuditEntry))
    return (
        f'WITH moved AS (UPDATE "{request}" SET {sets} WHERE "id" = ANY(%s::uuid[]) AND "status" = %s RETURNING "id"),'  # noqa: S608 # nosec B608 - names from the models, values bound
        f' events AS (INSERT INTO "{event}" ("request_id", "from_status", "to_status", "reason", "at")'
        " SELECT id, %s, %s, %s, %s FROM moved),"
        f' entries AS (INSERT INTO "{entry}" ({AUDIT_INSERT_COLUMNS})'
        " SELECT %s, 'request.transition', '', 'underwriting_request', id::text, %s::jsonb FROM moved)"
        " SELECT id FROM moved"
    )


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _transition_orm(
    changes: Mapping[uuid.UUID, Mapping[str, Any]], values: dict[str, Any], *, from_status: str, to_status: str,
    reason: str, now: datetime,
) -> list[uuid.UUID]:  # fmt: skip
    """Other databases (the embedded SQLite): the UPDATE, then one INSERT of events and one of entries."""
    ids = list(changes)
    updated = UnderwritingRequest.objects.filter(pk__in=ids, status=from_status).update(**values)
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
