"""Each governed action writes an audit event, and no event carries personal or clinical data."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEntry
from audit.services import audit_chain_verify
from datadomain import custodian
from datadomain import services as domain
from insurer_portal.services import api_key_create, api_key_revoke
from tenants.models import Insurer
from tests.factories import UserFactory
from tests.governance.conftest import approved
from tests.staff import authenticator, current_code
from tests.underwriting.conftest import ALICE_ID, ALICE_NAME, request_body
from underwriting.models import RatingManual, UnderwritingRequest

pytestmark = pytest.mark.django_db
URL = "/api/v1/underwriting-requests"


def actions(**filters: Any) -> list[str]:
    return list(AuditEntry.objects.filter(**filters).order_by("id").values_list("action", flat=True))


def assert_no_personal_data() -> None:
    text = json.dumps(list(AuditEntry.objects.values("actor", "target_id", "detail")), ensure_ascii=False)
    assert ALICE_ID not in text
    assert ALICE_NAME not in text
    assert ALICE_ID[:14] not in text


def test_a_request_through_the_whole_pipeline_is_audited(
    in_process_tasks: None,
    api: APIClient,
    alice: dict[str, str],
    approved_manuals: list[RatingManual],
    django_capture_on_commit_callbacks: Any,
) -> None:
    custodian.keypair_create(bits=2048)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(URL, request_body(alice), format="json")
    request = UnderwritingRequest.objects.get(pk=response.json()["id"])
    assert request.status == "completed"
    steps = AuditEntry.objects.filter(target_id=str(request.pk), action="request.transition").order_by("id")
    assert [entry.detail["to"] for entry in steps] == [
        "verifying", "extracting", "scoring", "tiering", "completed",
    ]  # fmt: skip
    received = AuditEntry.objects.get(action="request.received")
    assert received.detail["subject"] == request.subject_key[:12]
    assert actions(target_id=str(request.pk), action="custodian.answer") == ["custodian.answer"]
    assert "consent.record" in actions()
    assert "api_key.use" in actions()
    assert_no_personal_data()
    assert audit_chain_verify().intact


def test_rejections_are_audited_with_their_reason(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    response = api.post(URL, request_body({**alice, "name": "李四"}), format="json")
    entry = (
        AuditEntry.objects.filter(action="request.transition", target_id=response.json()["id"]).order_by("id").last()
    )
    assert entry is not None
    # The insurer sees "not_verified" alone; the audit trail says which check failed, for bureau staff.
    assert entry.detail == {
        "from": "verifying", "to": "rejected", "reason": "not_verified", "identity": "mismatch", "consent": "valid",
    }  # fmt: skip
    assert_no_personal_data()


def test_manual_upload_and_approval_are_audited(approved_manuals: list[RatingManual]) -> None:
    uploads = AuditEntry.objects.filter(action="manual.upload")
    approvals = AuditEntry.objects.filter(action="manual.approve")
    assert uploads.count() == approvals.count() == len(approved_manuals)
    first = approvals.order_by("id").first()
    assert first is not None
    assert first.actor == "model-reviewer"
    assert set(first.detail) == {"slug", "version", "sha256"}


def test_key_create_rotate_and_retire_are_audited() -> None:
    first = custodian.keypair_create(bits=2048)
    second = custodian.keypair_create(bits=2048)
    retired = custodian.keys_retire_unused()
    assert retired == [first.key_id]
    assert actions(target_type="custodian_key") == [
        "custodian.key_create",
        "custodian.key_rotate",
        "custodian.key_retire",
    ]
    rotate = AuditEntry.objects.get(action="custodian.key_rotate")
    assert (rotate.target_id, rotate.detail["retiring"]) == (second.key_id, [first.key_id])


def test_consent_record_and_withdraw_are_audited(insurer: Insurer) -> None:
    from datetime import timedelta

    from django.utils import timezone

    subject = domain.subject_key_for(ALICE_ID)
    evidence = domain.ConsentEvidence(
        reference="C-1", signed_at=timezone.now() - timedelta(days=1), expires_at=None, scope=["underwriting"],
        artifact_sha256="b" * 64,
    )  # fmt: skip
    [recorded] = domain.consent_record_many(insurer_slug=insurer.slug, evidence=[(subject, evidence)])
    assert isinstance(recorded, domain.RecordedConsent)
    consent_id = recorded.consent_id
    domain.consent_withdraw(consent_id=consent_id)
    domain.consent_withdraw(consent_id=consent_id)  # the first withdrawal stands; nothing new to record
    assert actions(target_type="consent") == ["consent.record", "consent.withdraw"]
    assert AuditEntry.objects.get(action="consent.withdraw").detail["subject"] == subject[:12]


@pytest.mark.usefixtures("alice_decision")
def test_explain_subject_is_audited_with_the_officer_and_both_approvers() -> None:
    approval = approved("subject_explanation", target=str(UnderwritingRequest.objects.get().pk))
    call_command("explain_subject", "--approval", str(approval), "--by", "pri-asker", stdout=StringIO())
    entry = AuditEntry.objects.get(action="subject.explain")
    assert entry.actor == "pri-asker"
    assert (entry.detail["requested_by"], entry.detail["approved_by"]) == ("pri-asker", "pri-approver")
    assert entry.target_id == domain.subject_key_for(ALICE_ID)[:12]
    assert_no_personal_data()


def test_api_key_create_revoke_and_use_per_minute(insurer: Insurer) -> None:
    key, plaintext = api_key_create(insurer=insurer)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    client.get(URL)
    client.get(URL)  # the same minute: not recorded again
    api_key_revoke(key=key)
    api_key_revoke(key=key)
    assert actions(target_type="api_key") == ["api_key.create", "api_key.use", "api_key.revoke"]
    assert plaintext not in json.dumps(list(AuditEntry.objects.values("detail")))


def test_staff_sign_in_and_failures_are_audited(client: Client) -> None:
    code = current_code(authenticator(UserFactory(username="staffer", is_staff=True)))
    login = "/admin/login/?next=/admin/"
    client.post(login, {"username": "staffer", "password": "wrong-password-1", "otp_token": code})
    client.post(login, {"username": "staffer", "password": "a-long-test-password", "otp_token": code})
    failed, signed_in = AuditEntry.objects.order_by("id")
    assert (failed.action, failed.actor, failed.detail) == ("auth.sign_in_failed", "staffer", {"area": "admin"})
    assert (signed_in.action, signed_in.actor, signed_in.detail["area"]) == ("auth.sign_in", "staffer", "admin")
    assert "wrong-password-1" not in json.dumps(list(AuditEntry.objects.values("detail")))


def test_admin_changes_are_audited() -> None:
    staff = UserFactory(username="editor", is_staff=True)
    LogEntry.objects.log_actions(
        user_id=staff.pk, queryset=User.objects.filter(pk=staff.pk), action_flag=CHANGE, change_message="[]"
    )
    entry = AuditEntry.objects.get(action="admin.change")
    assert (entry.actor, entry.target_type, entry.target_id) == ("editor", "auth.user", str(staff.pk))
    assert ContentType.objects.get_for_model(User).model == "user"


def test_an_insurer_reference_that_holds_an_id_stays_out_of_the_audit_log(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    body = request_body(alice, reference=ALICE_ID)
    body["consent"]["reference"] = ALICE_ID
    assert api.post(URL, body, format="json").status_code == 202
    assert AuditEntry.objects.filter(action="consent.record").exists()
    assert_no_personal_data()
