"""Four-eyes approvals for governed actions (key rotation, explanation of a decision).

A staff member asks (``approval_request``), another approves or refuses (``approval_decide``: never the
requester), and the approved request is carried out once: the app that owns the action calls
``approval_claim`` inside the transaction that performs it, and only one caller can move a request from
``approved`` to ``executed``. Each step is an audit event naming who asked, who decided and who carried
it out. Permissions are named by strings, so this module imports no other app of the project.
"""

from __future__ import annotations

import re

from django.contrib.auth.models import AbstractUser, AnonymousUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.errors import AppError
from audit.models import Approval
from audit.services import audit_record

# Who may ask for, approve and carry out each kind of action.
KIND_PERMISSIONS = {
    Approval.Kind.KEY_ROTATION: "datadomain.rotate_custodiankey",
    Approval.Kind.SUBJECT_EXPLANATION: "datadomain.explain_patient",
}

# Something that looks like a resident ID (17 digits and a check character) must not be typed into a reason.
_RESIDENT_ID_LIKE = re.compile(r"\d{17}[\dXx]")

# Who acts: request.user in the admin, a looked-up user in a command.
Staff = AbstractUser | AnonymousUser


class ApprovalError(AppError):
    """A four-eyes rule was broken (:class:`audit.errors.AppError`); ``message`` is for staff."""


def may_handle(user: Staff, kind: str) -> bool:
    return bool(user.is_active and user.has_perm(KIND_PERMISSIONS[Approval.Kind(kind)]))


def kinds_for(user: Staff) -> list[str]:
    return [kind for kind in KIND_PERMISSIONS if may_handle(user, kind)]


def _check_role(user: Staff, kind: str) -> None:
    if not may_handle(user, kind):
        raise ApprovalError("forbidden", _("Your staff role does not cover this kind of request."))


def _audit(action: str, approval: Approval, actor: Staff, **detail: object) -> None:
    audit_record(
        action=action,
        actor=actor.get_username(),
        target_type="approval",
        target_id=str(approval.pk),
        detail={"kind": approval.kind, "target": approval.target, **detail},
    )


@transaction.atomic
def approval_request(*, kind: str, requested_by: Staff, target: str = "", reason: str = "") -> Approval:
    """Ask for an action; it waits for another staff member's approval."""
    _check_role(requested_by, kind)
    if _RESIDENT_ID_LIKE.search(reason):
        raise ApprovalError("invalid_input", _("The reason must not contain a resident ID."))
    approval = Approval.objects.create(kind=kind, target=target, reason=reason.strip()[:300], requested_by=requested_by)  # type: ignore[misc]
    _audit("approval.request", approval, requested_by)
    return approval


@transaction.atomic
def approval_decide(*, approval_id: int, decided_by: Staff, approve: bool) -> Approval:
    """Approve or refuse a pending request. The requester can never decide their own request."""
    approval = Approval.objects.select_for_update().filter(pk=approval_id).first()
    if approval is None:
        raise ApprovalError("not_found", _("No such four-eyes request."))
    _check_role(decided_by, approval.kind)
    if approval.requested_by_id == decided_by.pk:
        raise ApprovalError("four_eyes", _("Someone other than the requester must approve or refuse a request."))
    if approval.status != Approval.Status.PENDING:
        raise ApprovalError("not_pending", _("This request has already been decided."))
    status = Approval.Status.APPROVED if approve else Approval.Status.REFUSED
    Approval.objects.filter(pk=approval.pk, status=Approval.Status.PENDING).update(
        status=status, decided_by=decided_by, decided_at=timezone.now()
    )
    approval.refresh_from_db()
    _audit(
        "approval.approve" if approve else "approval.refuse",
        approval,
        decided_by,
        requested_by=approval.requested_by.get_username(),
    )
    return approval


def approval_claim(*, approval_id: int, kind: str, executed_by: Staff) -> Approval:
    """Mark an approved request carried out; call it in the transaction that performs the action.

    The guarded update lets exactly one caller through: a second attempt (a double click, a second
    command run) finds the request ``executed`` and is refused."""
    _check_role(executed_by, kind)
    claimed = Approval.objects.filter(pk=approval_id, kind=kind, status=Approval.Status.APPROVED).update(
        status=Approval.Status.EXECUTED, executed_by=executed_by, executed_at=timezone.now()
    )
    approval = Approval.objects.select_related("requested_by", "decided_by").filter(pk=approval_id).first()
    if approval is None or approval.kind != kind:
        raise ApprovalError("not_found", _("No such four-eyes request."))
    if not claimed:
        if approval.status == Approval.Status.EXECUTED:
            raise ApprovalError("already_executed", _("This request has already been carried out."))
        raise ApprovalError("not_approved", _("This request has not been approved."))
    assert approval.decided_by is not None  # approved rows always have an approver (check constraint)
    _audit(
        "approval.execute",
        approval,
        executed_by,
        requested_by=approval.requested_by.get_username(),
        approved_by=approval.decided_by.get_username(),
    )
    return approval
