"""Misuse flags and rate-limit overrides in the admin: who sees and reviews them, filters, charts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from audit import roles
from audit.models import AuditEntry
from tests.factories import InsurerFactory, UserFactory
from tests.staff import otp_login
from underwriting.models import MisuseFlag, RateLimitOverride, UnderwritingRequest
from underwriting.services.flags import flags_evaluate

pytestmark = pytest.mark.django_db
FLAGS = "/admin/underwriting/misuseflag/"
OVERRIDES = "/admin/underwriting/ratelimitoverride/"
SUBJECT = "8d" * 32


def staff_in(role: str | None, username: str) -> tuple[Client, User]:
    user: User = UserFactory(username=username, is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return otp_login(Client(headers={"accept-language": "en"}), user), user


@pytest.fixture
def flag(settings: Any) -> MisuseFlag:
    settings.FLAG_SUBJECT_MANUALS = 2
    insurer = InsurerFactory(slug="flag-life")
    for index, manual in enumerate(["charlson-acci", "life-debits"]):
        UnderwritingRequest.objects.create(
            insurer=insurer, reference=f"F-{index}", subject_key=SUBJECT, resident_id_masked="370214********123X",
            manual_slug=manual, as_of=timezone.localdate(), status="completed", tier_code="A",
        )  # fmt: skip
    flags_evaluate()
    return MisuseFlag.objects.get()


def test_the_flag_list_has_filters_a_chart_and_no_full_subject_key(flag: MisuseFlag) -> None:
    client, _ = staff_in(roles.AUDITOR, "flag-auditor")
    page = client.get(FLAGS).content.decode()
    assert "Flags raised per day" in page
    assert "<svg" in page
    assert "kind__exact=subject_manuals" in page  # the kind filter
    assert "status__exact=open" in page
    assert SUBJECT[:12] in page
    assert SUBJECT not in page
    assert client.get(FLAGS + "?status__exact=closed").status_code == 200
    assert client.get(FLAGS + "?kind__exact=subject_manuals&status__in=open,acknowledged").status_code == 200


def test_the_flag_list_says_when_there_are_no_flags(db: None) -> None:
    client, _ = staff_in(roles.AUDITOR, "flag-auditor")
    assert "No flags were raised in this period." in client.get(FLAGS).content.decode()


def test_an_auditor_reads_flags_but_does_not_review_them(flag: MisuseFlag) -> None:
    client, _ = staff_in(roles.AUDITOR, "flag-auditor")
    assert "close_selected" not in client.get(FLAGS).content.decode()
    client.post(FLAGS, {"action": "close_selected", "_selected_action": [flag.pk]})
    flag.refresh_from_db()
    assert flag.status == "open"


def test_a_privacy_officer_reviews_a_flag_with_a_note(flag: MisuseFlag) -> None:
    client, officer = staff_in(roles.PRIVACY_OFFICER, "flag-officer")
    client.post(FLAGS, {"action": "acknowledge_selected", "_selected_action": [flag.pk]})
    flag.refresh_from_db()
    assert (flag.status, flag.reviewed_by) == ("acknowledged", officer)
    client.post(f"{FLAGS}{flag.pk}/change/", {"status": "closed", "review_note": "Insurer re-rated a policy."})
    flag.refresh_from_db()
    assert (flag.status, flag.review_note) == ("closed", "Insurer re-rated a policy.")
    assert [entry.detail["status"] for entry in AuditEntry.objects.filter(action="flag.review").order_by("id")] == [
        "acknowledged", "closed",
    ]  # fmt: skip


def post_override(client: Client, request: UnderwritingRequest, *, reason: str, allowance: int, days: int) -> Any:
    """The admin's override form, filled in for ``request`` with an expiry ``days`` from now."""
    expires = timezone.localtime() + timedelta(days=days)
    return client.post(
        OVERRIDES + "add/",
        {"request_id": str(request.pk), "reason": reason, "allowance": str(allowance),
         "expires_at_0": expires.strftime("%Y-%m-%d"), "expires_at_1": expires.strftime("%H:%M:%S")},
    )  # fmt: skip


def test_a_privacy_officer_grants_an_override_from_a_request(flag: MisuseFlag) -> None:
    client, officer = staff_in(roles.PRIVACY_OFFICER, "flag-officer")
    request = UnderwritingRequest.objects.first()
    assert request is not None
    response = post_override(client, request, reason="Policy change confirmed by phone", allowance=2, days=3)
    assert response.status_code == 302, response.content.decode()[:2000]
    override = RateLimitOverride.objects.get()
    assert (override.insurer_id, override.subject_key, override.allowance, override.granted_by) == (
        request.insurer_id, SUBJECT, 2, officer,
    )  # fmt: skip
    assert AuditEntry.objects.get(action="rate_limit_override.grant").actor == "flag-officer"
    page = client.get(OVERRIDES).content.decode()
    assert SUBJECT[:12] in page
    assert SUBJECT not in page


def test_an_override_with_a_far_expiry_is_refused_in_the_form(flag: MisuseFlag) -> None:
    client, _ = staff_in(roles.PRIVACY_OFFICER, "flag-officer")
    request = UnderwritingRequest.objects.first()
    assert request is not None
    response = post_override(client, request, reason="too long", allowance=1, days=90)
    assert response.status_code == 200
    assert "within the next 30 days" in response.content.decode()
    assert not RateLimitOverride.objects.exists()


def test_an_auditor_cannot_grant_an_override(flag: MisuseFlag) -> None:
    client, _ = staff_in(roles.AUDITOR, "flag-auditor")
    assert client.get(OVERRIDES).status_code == 200
    assert client.get(OVERRIDES + "add/").status_code == 403
