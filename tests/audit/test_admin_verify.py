"""The audit log's admin: "Verify the chain" for auditors (read-only), and entries not yet linked."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.utils import timezone

from audit import roles, services
from audit.models import AuditEntry
from tests.factories import UserFactory
from tests.staff import otp_login

pytestmark = pytest.mark.django_db
LIST = "/admin/audit/auditentry/"
VERIFY = "/admin/audit/auditentry/verify/"


def staff_in(role: str | None, username: str) -> Client:
    user: User = UserFactory(username=username, is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return otp_login(Client(headers={"accept-language": "en"}), user)


def test_auditors_find_the_verify_button_and_see_the_result() -> None:
    for index in range(3):
        services.audit_record(action="test.event", target_id=str(index))
    services.audit_chain_pending()
    services.audit_record(action="test.pending")
    auditor = staff_in(roles.AUDITOR, "chain-auditor")
    assert VERIFY in auditor.get(LIST).content.decode()
    page = auditor.get(VERIFY)
    text = page.content.decode()
    assert page.status_code == 200
    assert 'role="status"' in text
    assert "The audit chain is intact." in text
    assert page.context["report"].checked == 3
    assert page.context["report"].pending == AuditEntry.objects.filter(chain_seq__isnull=True).count() >= 1
    assert AuditEntry.objects.get(action="test.pending").chain_seq is None  # verification linked nothing


def test_the_verify_page_shows_what_is_broken() -> None:
    for index in range(3):
        services.audit_record(action="test.event", target_id=str(index))
    services.audit_chain_pending()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER USER")
        cursor.execute("UPDATE audit_auditentry SET actor = 'someone-else' WHERE chain_seq = 2")
    text = staff_in(roles.AUDITOR, "chain-auditor").get(VERIFY).content.decode()
    assert "The audit chain failed verification." in text
    assert "broken at entry 2" in text


def test_only_staff_who_may_read_the_audit_log_may_verify_it() -> None:
    assert staff_in(roles.MODEL_REVIEWER, "reviewer-only").get(VERIFY).status_code == 403
    assert Client().get(VERIFY).status_code == 302  # to the sign-in page
    assert staff_in(roles.AUDITOR, "chain-auditor").post(VERIFY).status_code == 405


def test_entries_not_yet_linked_show_as_pending_then_as_overdue(settings: Any) -> None:
    services.audit_record(action="test.linked")
    services.audit_chain_pending()
    services.audit_record(action="test.pending")
    auditor = staff_in(roles.AUDITOR, "chain-auditor")
    rows = auditor.get(LIST).content.decode()
    assert ">pending<" in rows
    assert ">1<" in rows  # the linked entry's position
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.AUDIT_CHAIN_GRACE_SECONDS + 5)):
        assert ">not chained (overdue)<" in auditor.get(LIST).content.decode()


def test_the_verify_page_speaks_simplified_chinese() -> None:
    services.audit_record(action="test.pending")
    user: User = UserFactory(username="zh-auditor", is_staff=True)
    user.groups.add(Group.objects.get(name=roles.AUDITOR))
    client = otp_login(Client(headers={"accept-language": "zh-hans"}), user)
    text = client.get(VERIFY).content.decode()
    assert "审计链完好。" in text
    assert "待入链的条目" in text
    assert "待入链" in client.get(LIST).content.decode()
