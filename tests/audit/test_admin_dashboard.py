"""The bureau staff's landing page in the admin: requests per day by insurer, tier mix by manual,
latency, open misuse flags and the task queues, with empty states when there is nothing to show."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from audit import roles
from tests.factories import InsurerFactory, UserFactory
from tests.staff import otp_login
from underwriting.models import UnderwritingRequest
from underwriting.services.flags import flags_evaluate

pytestmark = pytest.mark.django_db
SUBJECT = "7c" * 32


def staff_in(role: str | None, username: str) -> Client:
    user: User = UserFactory(username=username, is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return otp_login(Client(headers={"accept-language": "en"}), user)


@pytest.fixture
def auditor() -> Client:
    return staff_in(roles.AUDITOR, "dash-auditor")


def history() -> None:
    now = timezone.now()
    for index, (insurer, manual, tier) in enumerate(
        [("north-life", "charlson-acci", "A"), ("north-life", "elixhauser-vw", "C"),
         ("south-life", "charlson-acci", "B"), ("south-life", "life-debits", "D")]
    ):  # fmt: skip
        request = UnderwritingRequest.objects.create(
            insurer=InsurerFactory(slug=insurer, name=insurer.title()), reference=f"D-{index}",
            subject_key=SUBJECT, resident_id_masked="370214********123X", manual_slug=manual,
            as_of=timezone.localdate(), status="completed", tier_code=tier,
            completed_at=now + timedelta(seconds=index + 1),
        )  # fmt: skip
        UnderwritingRequest.objects.filter(pk=request.pk).update(created_at=now)


def test_the_dashboard_shows_requests_tiers_latency_flags_and_queues_to_an_auditor(
    auditor: Client, settings: Any
) -> None:
    settings.FLAG_SUBJECT_MANUALS = 2
    history()
    flags_evaluate()  # north-life and south-life each scored the subject with two manuals
    page = auditor.get("/admin/").content.decode()
    assert "Requests per day by insurer" in page
    assert "North-Life" in page  # the legend
    assert "South-Life" in page
    assert page.count("<svg") >= 3
    assert "charlson-acci" in page
    assert "life-debits" in page
    assert "p99" in page
    assert "Open misuse flags" in page
    assert "one subject, many manuals" in page
    assert "Task queues" in page
    for queue in ("domain", "scoring", "custodian", "webhooks"):
        assert f'<th scope="row">{queue}</th>' in page
    assert SUBJECT[:12] not in page


def test_the_dashboard_has_empty_states_when_there_is_no_data(auditor: Client) -> None:
    response = auditor.get("/admin/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "No requests in this period." in page
    assert "No completed requests in this period." in page
    assert "No open flags." in page


def test_staff_without_a_role_see_only_the_queues(db: None) -> None:
    history()
    page = staff_in(None, "dash-nobody").get("/admin/").content.decode()
    assert "Task queues" in page
    assert "Requests per day by insurer" not in page
    assert "Open misuse flags" not in page
    assert "North-Life" not in page


def test_the_dashboard_is_in_simplified_chinese_by_default(db: None) -> None:
    user = UserFactory(username="dash-zh", is_staff=True, is_superuser=True)
    page = otp_login(Client(), user).get("/admin/").content.decode()
    assert "任务队列" in page
