"""Each staff role can do exactly what it should in the admin, and nothing more."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from audit import roles
from audit.models import Approval, AuditEntry
from audit.services import audit_record
from datadomain import services as domain
from datadomain.models import Consent, CustodianKey
from tests.factories import UserFactory
from tests.staff import otp_login
from underwriting.models import RatingManual
from underwriting.reference import builtin_manual_paths
from underwriting.services.manuals import manual_upload

pytestmark = pytest.mark.django_db

PAGES = {
    "audit log": "/admin/audit/auditentry/",
    "requests": "/admin/underwriting/underwritingrequest/",
    "manuals": "/admin/underwriting/ratingmanual/",
    "consent": "/admin/datadomain/consent/",
    "subjects": "/admin/datadomain/patient/",
    "keys": "/admin/datadomain/custodiankey/",
    "api keys": "/admin/tenants/apikey/",
    "insurers": "/admin/tenants/insurer/",
    "users": "/admin/auth/user/",
    "groups": "/admin/auth/group/",
    "webhook deliveries": "/admin/underwriting/webhookdelivery/",
    "quarantine": "/admin/datadomain/quarantinedline/",
    "encrypted vectors": "/admin/datadomain/encryptedfeaturevector/",
    "four-eyes requests": "/admin/audit/approval/",
    "subject rights": "/admin/subject-rights/",
}
ALLOWED = {
    roles.AUDITOR: {"audit log", "requests", "manuals", "consent", "four-eyes requests"},
    roles.PRIVACY_OFFICER: {"consent", "subjects", "four-eyes requests", "subject rights"},
    roles.MODEL_REVIEWER: {"manuals"},
    roles.KEY_OFFICER: {"keys", "four-eyes requests"},
}


def staff_client(role: str | None, username: str | None = None) -> tuple[Client, User]:
    user = UserFactory(username=username or f"staff-{(role or 'none').replace(' ', '-')}", is_staff=True)
    if role is not None:
        user.groups.add(Group.objects.get(name=role))
    return otp_login(Client(), user), user


@pytest.fixture
def draft() -> RatingManual:
    author = UserFactory(username="manual-author", is_staff=True)
    return manual_upload(text=builtin_manual_paths()[0].read_text(encoding="utf-8"), uploaded_by=author)


@pytest.fixture
def consent_id() -> int:
    evidence = domain.ConsentEvidence(
        reference="C-9", signed_at=timezone.now(), expires_at=None, scope=["underwriting"], artifact_sha256="c" * 64
    )
    [recorded] = domain.consent_record_many(insurer_slug="some-life", evidence=[("ab" * 32, evidence)])
    assert isinstance(recorded, domain.RecordedConsent)
    return recorded.consent_id


def test_the_role_groups_exist_after_migrate() -> None:
    assert set(Group.objects.values_list("name", flat=True)) >= set(roles.ROLES)
    roles.staff_roles_ensure()  # idempotent
    assert Group.objects.filter(name__in=roles.ROLES).count() == len(roles.ROLES)


@pytest.mark.parametrize("role", list(ALLOWED))
def test_each_role_sees_exactly_its_pages(role: str) -> None:
    client, _ = staff_client(role)
    for page, url in PAGES.items():
        status = client.get(url).status_code
        assert status == (200 if page in ALLOWED[role] else 403), (role, page, status)


def test_staff_without_a_role_see_nothing() -> None:
    client, _ = staff_client(None)
    assert {client.get(url).status_code for url in PAGES.values()} == {403}


def approve(client: Client, manual: RatingManual) -> Any:
    """Through the manual's approval page, with its confirmation ticked (there is no bulk approval)."""
    url = f"{PAGES['manuals']}{manual.pk}/approve/"
    return client.post(url, {"confirm": "on", "document_sha256": manual.document_sha256})


@pytest.mark.parametrize("role", [roles.AUDITOR, roles.MODEL_REVIEWER])
def test_only_model_reviewers_approve_manuals(role: str, draft: RatingManual) -> None:
    client, _ = staff_client(role)
    page = client.get(PAGES["manuals"]).content.decode()
    assert (f"{draft.pk}/approve/" in page) is (role == roles.MODEL_REVIEWER)
    assert approve(client, draft).status_code == (302 if role == roles.MODEL_REVIEWER else 403)
    draft.refresh_from_db()
    assert draft.status == ("approved" if role == roles.MODEL_REVIEWER else "draft")


def test_model_reviewer_cannot_edit_a_manual(draft: RatingManual) -> None:
    client, _ = staff_client(roles.MODEL_REVIEWER)
    url = f"{PAGES['manuals']}{draft.pk}/change/"
    assert client.get(url).status_code == 200  # view only
    client.post(url, {"title": "changed"})
    draft.refresh_from_db()
    assert draft.title != "changed"
    assert client.post(f"{PAGES['manuals']}{draft.pk}/delete/").status_code == 403


@pytest.mark.parametrize("role", [roles.AUDITOR, roles.PRIVACY_OFFICER])
def test_only_privacy_officers_withdraw_consent(role: str, consent_id: int) -> None:
    client, user = staff_client(role)
    client.post(PAGES["consent"], {"action": "withdraw", "_selected_action": [consent_id]})
    withdrawn = Consent.objects.get(pk=consent_id).withdrawn_at is not None
    assert withdrawn is (role == roles.PRIVACY_OFFICER)
    if withdrawn:
        assert AuditEntry.objects.get(action="consent.withdraw").actor == user.username


@pytest.mark.parametrize("role", [roles.AUDITOR, roles.PRIVACY_OFFICER, roles.MODEL_REVIEWER, roles.KEY_OFFICER])
def test_only_key_officers_ask_for_approve_and_carry_out_rotations(
    role: str, in_process_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    from datadomain import custodian

    first = custodian.keypair_create(bits=2048)
    asker, _ = staff_client(roles.KEY_OFFICER, "key-asker")
    asker.post(PAGES["keys"] + "rotation/ask/", {"reason": "yearly"})
    approval = Approval.objects.get(kind="key_rotation")
    client, user = staff_client(role, f"second-{role.replace(' ', '-')}")
    client.post(PAGES["four-eyes requests"], {"action": "approve", "_selected_action": [approval.pk]})
    approval.refresh_from_db()
    assert approval.status == ("approved" if role == roles.KEY_OFFICER else "pending")
    if role != roles.KEY_OFFICER:
        assert client.post(f"{PAGES['keys']}rotation/{approval.pk}/carry-out/").status_code == 403
        return
    with django_capture_on_commit_callbacks(execute=True):
        asker.post(f"{PAGES['keys']}rotation/{approval.pk}/carry-out/")
    assert CustodianKey.objects.get(pk=first.pk).status == "retiring"
    assert CustodianKey.objects.filter(status="active").count() == 1
    assert AuditEntry.objects.get(action="custodian.key_rotate").actor == "key-asker"
    assert AuditEntry.objects.get(action="approval.approve").actor == user.username


@pytest.mark.parametrize("role", [roles.AUDITOR, roles.KEY_OFFICER, roles.PRIVACY_OFFICER])
def test_only_key_officers_retire_keys(role: str, in_process_tasks: None) -> None:
    from datadomain import custodian

    old = custodian.keypair_create(bits=2048)
    custodian.keypair_create(bits=2048)
    client, _ = staff_client(role)
    client.post(PAGES["keys"], {"action": "retire", "_selected_action": [old.pk]})
    assert CustodianKey.objects.get(pk=old.pk).status == ("retired" if role == roles.KEY_OFFICER else "retiring")


@pytest.mark.parametrize("role", [roles.AUDITOR, roles.KEY_OFFICER, roles.MODEL_REVIEWER, roles.PRIVACY_OFFICER])
def test_only_privacy_officers_serve_subject_rights(role: str, consent_id: int) -> None:
    from tests.underwriting.conftest import ALICE_ID

    client, _ = staff_client(role)
    response = client.post(PAGES["subject rights"], {"op": "withdraw", "resident_id": ALICE_ID})
    assert response.status_code == (200 if role == roles.PRIVACY_OFFICER else 403)
    assert client.get(PAGES["subject rights"]).status_code == (200 if role == roles.PRIVACY_OFFICER else 403)


@pytest.mark.parametrize("role", [roles.AUDITOR, roles.KEY_OFFICER, roles.PRIVACY_OFFICER])
def test_only_privacy_officers_ask_for_explanations(role: str, alice_decision: str) -> None:
    client, _ = staff_client(role)
    client.post(PAGES["subject rights"], {"op": "ask_explanation", "request_id": alice_decision})
    assert Approval.objects.filter(kind="subject_explanation").exists() is (role == roles.PRIVACY_OFFICER)


def test_auditors_read_four_eyes_requests_but_decide_none() -> None:
    key_officer, _ = staff_client(roles.KEY_OFFICER, "key-asker")
    key_officer.post(PAGES["keys"] + "rotation/ask/", {"reason": ""})
    auditor, _ = staff_client(roles.AUDITOR)
    page = auditor.get(PAGES["four-eyes requests"]).content.decode()
    assert "key-asker" in page
    assert 'value="approve"' not in page
    approval = Approval.objects.get()
    auditor.post(PAGES["four-eyes requests"], {"action": "approve", "_selected_action": [approval.pk]})
    assert Approval.objects.get().status == "pending"


def test_nobody_changes_the_audit_log_in_the_admin() -> None:
    audit_record(action="test.event")
    superuser = User.objects.create_superuser(username="root", password="a-long-test-password")
    client = otp_login(Client(), superuser)
    entry = AuditEntry.objects.get(action="test.event")
    assert client.get(PAGES["audit log"] + "?action=test.event").status_code == 200
    assert client.get(PAGES["audit log"] + "add/").status_code == 403
    assert client.post(f"{PAGES['audit log']}{entry.pk}/delete/").status_code == 403
    client.post(f"{PAGES['audit log']}{entry.pk}/change/", {"action": "edited"})
    assert AuditEntry.objects.get(pk=entry.pk).action == "test.event"
    page = client.get(PAGES["audit log"]).content.decode()
    assert "delete_selected" not in page


def test_auditor_exports_requests_as_csv_for_the_regulator() -> None:
    from tests.factories import InsurerFactory
    from underwriting.models import UnderwritingRequest

    insurer = InsurerFactory(slug="csv-life")
    subject_key = "cd" * 32
    rows = [
        UnderwritingRequest.objects.create(
            insurer=insurer,
            reference=f"REG-{index}",
            subject_key=subject_key,
            resident_id_masked="370214********123X",
            manual_slug="charlson-acci",
            as_of=timezone.localdate(),
            status="completed" if index else "rejected",
            tier_code="B" if index else "",
        )
        for index in range(3)
    ]
    client, user = staff_client(roles.AUDITOR)
    listing = client.get(PAGES["requests"] + "?status__exact=completed")
    assert listing.status_code == 200
    assert "export_csv" in listing.content.decode()
    response = client.post(
        PAGES["requests"] + "?status__exact=completed&q=REG-",
        {"action": "export_csv", "_selected_action": [str(row.pk) for row in rows[1:]]},
    )
    assert response["Content-Type"] == "text/csv"
    lines = b"".join(response.streaming_content).decode().splitlines()  # type: ignore[attr-defined]
    assert lines[0].startswith("id,reference,insurer,manual")
    assert [line.split(",")[1] for line in lines[1:]] == ["REG-1", "REG-2"]
    body = "\n".join(lines)
    assert subject_key[:12] not in body
    assert "370214" not in body
    export = AuditEntry.objects.get(action="request.export")
    assert (export.actor, export.detail["count"]) == (user.username, 2)
    # The filters are kept, the free-text search is not (it may hold anything staff typed).
    assert export.detail["filters"] == {"status__exact": "completed"}
    assert export.detail["searched"] is True
    assert "REG-" not in str(export.detail)


def test_auditor_reads_a_requests_audit_trail(
    in_process_tasks: None,
    api: Any,
    alice: dict[str, str],
    approved_manuals: list[RatingManual],
    django_capture_on_commit_callbacks: Any,
) -> None:
    from datadomain import custodian
    from tests.underwriting.conftest import ALICE_ID, request_body

    custodian.keypair_create(bits=2048)
    with django_capture_on_commit_callbacks(execute=True):
        request_id = api.post("/api/v1/underwriting-requests", request_body(alice), format="json").json()["id"]
    client, _ = staff_client(roles.AUDITOR)
    page = client.get(f"{PAGES['requests']}{request_id}/change/").content.decode()
    assert "from=tiering reason= to=completed" not in page  # empty values are left out
    assert "from=tiering to=completed" in page
    assert "custodian.answer" in page
    assert ALICE_ID not in page
    assert alice["name"] not in page


def test_each_role_sees_only_the_four_eyes_requests_it_handles(alice_decision: str) -> None:
    key_officer, _ = staff_client(roles.KEY_OFFICER, "key-asker")
    key_officer.post(PAGES["keys"] + "rotation/ask/", {"reason": ""})
    privacy_officer, _ = staff_client(roles.PRIVACY_OFFICER, "privacy-asker")
    privacy_officer.post(PAGES["subject rights"], {"op": "ask_explanation", "request_id": alice_decision})
    rotation = Approval.objects.get(kind="key_rotation")
    explanation = Approval.objects.get(kind="subject_explanation")
    seen = {}
    for role in (roles.KEY_OFFICER, roles.PRIVACY_OFFICER, roles.AUDITOR):
        client, _ = staff_client(role, f"reader-{role.replace(' ', '-')}")
        response = client.get(PAGES["four-eyes requests"])
        seen[role] = {approval.pk for approval in response.context["cl"].result_list}
    assert seen == {
        roles.KEY_OFFICER: {rotation.pk},
        roles.PRIVACY_OFFICER: {explanation.pk},
        roles.AUDITOR: {rotation.pk, explanation.pk},
    }
