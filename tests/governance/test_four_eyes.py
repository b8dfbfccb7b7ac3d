"""Four-eyes for key rotation and for explaining a decision: one staff member asks, another approves,
the approval is carried out once, and the audit log names all of them."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction
from django.utils import translation

from audit import roles
from audit.approvals import ApprovalError, approval_decide, approval_request
from audit.models import Approval, AuditEntry
from audit.services import audit_chain_verify
from datadomain import custodian
from datadomain import services as domain
from datadomain.models import CustodianKey
from tests.governance.conftest import ALICE_ID, StaffFactory, assert_no_personal_data
from underwriting.services.explain import explanation_execute, explanation_request

pytestmark = pytest.mark.django_db
ROTATION = Approval.Kind.KEY_ROTATION
EXPLANATION = Approval.Kind.SUBJECT_EXPLANATION


def test_the_requester_cannot_approve_their_own_request(staff: StaffFactory) -> None:
    kim = staff(roles.KEY_OFFICER, "kim")
    approval = approval_request(kind=ROTATION, requested_by=kim, reason="yearly rotation")
    with pytest.raises(ApprovalError) as refused:
        approval_decide(approval_id=approval.pk, decided_by=kim, approve=True)
    assert refused.value.code == "four_eyes"
    approval.refresh_from_db()
    assert approval.status == "pending"
    assert not AuditEntry.objects.filter(action="approval.approve").exists()


def test_the_database_refuses_a_self_approval_too(staff: StaffFactory) -> None:
    kim = staff(roles.KEY_OFFICER, "kim")
    approval = approval_request(kind=ROTATION, requested_by=kim)
    with pytest.raises(IntegrityError), transaction.atomic():
        Approval.objects.filter(pk=approval.pk).update(status="approved", decided_by=kim)


def test_an_approved_rotation_is_carried_out_once_and_names_everyone(
    staff: StaffFactory, in_process_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    first = custodian.keypair_create(bits=2048)
    kim, lee = staff(roles.KEY_OFFICER, "kim"), staff(roles.KEY_OFFICER, "lee")
    approval = approval_request(kind=ROTATION, requested_by=kim, reason="yearly rotation")
    with pytest.raises(ApprovalError, match="not been approved"):
        domain.key_rotation_execute(approval_id=approval.pk, executed_by=kim)
    approval_decide(approval_id=approval.pk, decided_by=lee, approve=True)
    with django_capture_on_commit_callbacks(execute=True):
        domain.key_rotation_execute(approval_id=approval.pk, executed_by=kim)
    with pytest.raises(ApprovalError) as again, django_capture_on_commit_callbacks(execute=True):
        domain.key_rotation_execute(approval_id=approval.pk, executed_by=lee)
    assert again.value.code == "already_executed"

    assert CustodianKey.objects.filter(status="active").count() == 1
    assert CustodianKey.objects.get(pk=first.pk).status == "retiring"
    assert AuditEntry.objects.filter(action="custodian.key_rotate").count() == 1
    trail = {entry.action: entry for entry in AuditEntry.objects.filter(target_type="approval")}
    assert trail["approval.request"].actor == "kim"
    assert (trail["approval.approve"].actor, trail["approval.approve"].detail["requested_by"]) == ("lee", "kim")
    executed = trail["approval.execute"]
    assert (executed.actor, executed.detail["requested_by"], executed.detail["approved_by"]) == ("kim", "kim", "lee")
    rotate = AuditEntry.objects.get(action="custodian.key_rotate")
    assert (rotate.actor, rotate.detail["approval"]) == ("kim", approval.pk)
    assert audit_chain_verify().intact


def test_a_refused_request_is_never_carried_out(staff: StaffFactory) -> None:
    kim, lee = staff(roles.KEY_OFFICER, "kim"), staff(roles.KEY_OFFICER, "lee")
    approval = approval_request(kind=ROTATION, requested_by=kim)
    approval_decide(approval_id=approval.pk, decided_by=lee, approve=False)
    with pytest.raises(ApprovalError, match="not been approved"):
        domain.key_rotation_execute(approval_id=approval.pk, executed_by=kim)
    with pytest.raises(ApprovalError, match="already been decided"):
        approval_decide(approval_id=approval.pk, decided_by=lee, approve=True)
    assert AuditEntry.objects.get(action="approval.refuse").actor == "lee"


def test_each_kind_belongs_to_its_role(staff: StaffFactory) -> None:
    kim = staff(roles.KEY_OFFICER, "kim")
    pia = staff(roles.PRIVACY_OFFICER, "pia")
    with pytest.raises(ApprovalError, match="role"):
        approval_request(kind=EXPLANATION, requested_by=kim, target="x")
    with pytest.raises(ApprovalError, match="role"):
        approval_request(kind=ROTATION, requested_by=pia)
    approval = approval_request(kind=ROTATION, requested_by=kim)
    with pytest.raises(ApprovalError, match="role"):
        approval_decide(approval_id=approval.pk, decided_by=pia, approve=True)


def test_a_reason_may_not_carry_a_resident_id(staff: StaffFactory) -> None:
    kim = staff(roles.KEY_OFFICER, "kim")
    with pytest.raises(ApprovalError, match="resident ID"):
        approval_request(kind=ROTATION, requested_by=kim, reason=f"asked by {ALICE_ID}")
    assert not Approval.objects.exists()


def test_an_approved_explanation_shows_the_features_that_counted_once(staff: StaffFactory, alice_decision: str) -> None:
    translation.activate("en")  # the fixture's API calls switched to the default language
    pia, quinn = staff(roles.PRIVACY_OFFICER, "pia"), staff(roles.PRIVACY_OFFICER, "quinn")
    approval = explanation_request(request_id=alice_decision, requested_by=pia, reason="subject asked why")
    with pytest.raises(ApprovalError):
        explanation_execute(approval_id=approval.pk, executed_by=pia)
    approval_decide(approval_id=approval.pk, decided_by=quinn, approve=True)
    explanation = explanation_execute(approval_id=approval.pk, executed_by=pia)
    assert explanation.features == {
        "age.acci_points": {"value": 3, "points": 3},
        "charlson.chf": {"value": 1, "points": 1},
        "charlson.diabwc": {"value": 1, "points": 2},
    }
    assert (explanation.score, explanation.tier_code, explanation.recorded_tier) == (6, "D", "D")
    with pytest.raises(ApprovalError, match="already been carried out"):
        explanation_execute(approval_id=approval.pk, executed_by=quinn)
    explained = AuditEntry.objects.get(action="subject.explain")
    assert explained.actor == "pia"
    assert explained.target_id == domain.subject_key_for(ALICE_ID)[:12]
    assert (explained.detail["requested_by"], explained.detail["approved_by"]) == ("pia", "quinn")
    assert explained.detail["request"] == alice_decision
    assert_no_personal_data()


def test_only_a_decision_can_be_explained(staff: StaffFactory) -> None:
    pia = staff(roles.PRIVACY_OFFICER, "pia")
    from underwriting.errors import UnderwritingError

    with pytest.raises(UnderwritingError, match="completed request"):
        explanation_request(request_id="00000000-0000-0000-0000-000000000000", requested_by=pia)


def test_explain_subject_command_needs_an_approved_request(staff: StaffFactory, alice_decision: str) -> None:
    translation.activate("en")  # the fixture's API calls switched to the default language
    pia, quinn = staff(roles.PRIVACY_OFFICER, "pia"), staff(roles.PRIVACY_OFFICER, "quinn")
    approval = explanation_request(request_id=alice_decision, requested_by=pia)
    with pytest.raises(CommandError, match="not been approved"):
        call_command("explain_subject", "--approval", str(approval.pk), "--by", "pia", stdout=StringIO())
    approval_decide(approval_id=approval.pk, decided_by=quinn, approve=True)
    out = StringIO()
    call_command("explain_subject", "--approval", str(approval.pk), "--by", "pia", stdout=out)
    report = json.loads(out.getvalue())
    assert (report["score"], report["tier"]["code"], report["request"]) == (6, "D", alice_decision)
    with pytest.raises(CommandError, match="already been carried out"):
        call_command("explain_subject", "--approval", str(approval.pk), "--by", "pia", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("explain_subject", "--resident-id", ALICE_ID, "--manual", "charlson-acci", stdout=StringIO())
    assert AuditEntry.objects.filter(action="subject.explain").count() == 1


def test_rotate_keypair_command_needs_an_approved_request(staff: StaffFactory) -> None:
    first = custodian.keypair_create(bits=2048)
    kim, lee = staff(roles.KEY_OFFICER, "kim"), staff(roles.KEY_OFFICER, "lee")
    approval = approval_request(kind=ROTATION, requested_by=kim)
    with pytest.raises(CommandError, match="not been approved"):
        call_command(
            "rotate_keypair", "--approval", str(approval.pk), "--by", "kim", "--bits", "2048", stdout=StringIO()
        )
    assert CustodianKey.objects.get().pk == first.pk
    approval_decide(approval_id=approval.pk, decided_by=lee, approve=True)
    call_command("rotate_keypair", "--approval", str(approval.pk), "--by", "kim", "--bits", "2048", stdout=StringIO())
    assert CustodianKey.objects.get(status="active").pk != first.pk
    with pytest.raises(CommandError, match="already been carried out"):
        call_command(
            "rotate_keypair", "--approval", str(approval.pk), "--by", "lee", "--bits", "2048", stdout=StringIO()
        )
    assert CustodianKey.objects.count() == 2
