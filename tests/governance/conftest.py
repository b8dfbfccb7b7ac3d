from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import translation

from audit.models import AuditEntry
from tests.factories import UserFactory
from tests.staff import otp_login
from tests.underwriting.conftest import (  # noqa: F401 - fixtures shared with the underwriting tests
    ALICE_ID,
    ALICE_NAME,
    alice,
    api,
    approved_manuals,
    author,
    ingest,
    insurer,
    other_api,
    other_insurer,
    reviewer,
)


@pytest.fixture(autouse=True)
def key_dir(tmp_path: Path, settings: Any) -> Path:
    settings.CUSTODIAN_KEY_DIR = tmp_path / "keys"
    settings.CONSENT_STORE_DIR = tmp_path / "consent-forms"
    return Path(settings.CUSTODIAN_KEY_DIR)


StaffFactory = Callable[..., User]


@pytest.fixture
def staff(db: None) -> StaffFactory:
    """``staff("key officer", "kim")``: a staff member in a role group."""

    def make(role: str | None, username: str) -> User:
        user = UserFactory(username=username, is_staff=True)
        if role is not None:
            user.groups.add(Group.objects.get(name=role))
        return user  # type: ignore[no-any-return]

    return make


def signed_in(user: User) -> Client:
    """An admin session for ``user`` (password and authenticator verified), English pages."""
    return otp_login(Client(headers={"accept-language": "en"}), user)


def audit_text() -> str:
    """Everything the audit log holds that a person could read: actors, targets and details."""
    rows = AuditEntry.objects.values("actor", "target_type", "target_id", "detail")
    return json.dumps(list(rows), ensure_ascii=False, default=str)


def assert_no_personal_data(*texts: str) -> None:
    for text in (audit_text(), *texts):
        assert ALICE_ID not in text
        assert ALICE_ID[:14] not in text
        assert ALICE_NAME not in text


@pytest.fixture
def alice_decision(request: pytest.FixtureRequest, django_capture_on_commit_callbacks: Any) -> str:
    """A completed charlson-acci request about Alice (tier D), the whole pipeline run in this process."""
    from datadomain import custodian
    from tests.underwriting.conftest import request_body
    from underwriting.models import UnderwritingRequest

    for name in ("in_process_tasks", "alice", "approved_manuals"):
        request.getfixturevalue(name)
    custodian.keypair_create(bits=2048)
    with django_capture_on_commit_callbacks(execute=True):
        response = request.getfixturevalue("api").post(
            "/api/v1/underwriting-requests", request_body({"resident_id": ALICE_ID, "name": ALICE_NAME}), format="json"
        )
    decision = UnderwritingRequest.objects.get(pk=response.json()["id"])
    assert (decision.status, decision.tier_code) == ("completed", "D")
    return str(decision.pk)


@pytest.fixture(autouse=True)
def english() -> Iterator[None]:
    """Messages are asserted in English (the catalogue's msgids); the pages default to Chinese."""
    with translation.override("en"):
        yield


def approved(kind: str, *, target: str = "") -> int:
    """An approval of ``kind`` asked for by one officer of its role and approved by another; its id."""
    from audit import roles
    from audit.approvals import approval_decide, approval_request

    role = roles.KEY_OFFICER if kind == "key_rotation" else roles.PRIVACY_OFFICER
    asker, approver = (UserFactory(username=f"{role[:3]}-{name}", is_staff=True) for name in ("asker", "approver"))
    for user in (asker, approver):
        user.groups.add(Group.objects.get(name=role))
    approval = approval_request(kind=kind, requested_by=asker, target=target)
    approval_decide(approval_id=approval.pk, decided_by=approver, approve=True)
    return approval.pk
