"""Oracle and fishing detection: each flag kind is raised by a request history over its threshold, not
below it, and evaluating again never duplicates a flag."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from insurer_portal.services import api_key_create
from tenants.models import ApiKey, Insurer
from tests.factories import InsurerFactory, UserFactory
from underwriting.models import FlagKind, MisuseFlag, UnderwritingRequest, VerificationFailure
from underwriting.services.flags import flag_review, flags_evaluate

pytestmark = pytest.mark.django_db

SUBJECT = "5a" * 32
OTHER_SUBJECT = "6b" * 32


@pytest.fixture(autouse=True)
def _thresholds(settings: Any) -> None:
    settings.FLAG_SUBJECT_WINDOW_DAYS = 30
    settings.FLAG_SUBJECT_MANUALS = 3
    settings.FLAG_SUBJECT_INSURERS = 3
    settings.FLAG_BURST_WINDOW_MINUTES = 10
    settings.FLAG_BURST_COUNT = 20
    settings.FLAG_MISMATCH_WINDOW_HOURS = 24
    settings.FLAG_MISMATCH_COUNT = 5
    settings.FLAG_EVALUATE_SECONDS = 300


def make_requests(
    insurer: Insurer,
    count: int,
    *,
    subject_key: str = SUBJECT,
    manuals: list[str] | None = None,
    api_key: ApiKey | None = None,
    status: str = "completed",
    reason: str = "",
    at: datetime | None = None,
    spacing: timedelta = timedelta(seconds=1),
) -> list[UnderwritingRequest]:
    """``count`` requests of one insurer, ``spacing`` apart and ending at ``at`` (default: now)."""
    end = at or timezone.now()
    made = []
    for index in range(count):
        request = UnderwritingRequest.objects.create(
            insurer=insurer,
            api_key=api_key,
            reference=f"H-{insurer.pk}-{UnderwritingRequest.objects.count()}",
            subject_key=subject_key,
            resident_id_masked="370214********123X",
            manual_slug=(manuals or ["charlson-acci"])[index % len(manuals or ["charlson-acci"])],
            as_of=timezone.localdate(),
            status=status,
            reason=reason,
        )
        created = end - spacing * (count - 1 - index)
        UnderwritingRequest.objects.filter(pk=request.pk).update(created_at=created)
        made.append(request)
    return made


def flags(kind: str) -> list[MisuseFlag]:
    return list(MisuseFlag.objects.filter(kind=kind).order_by("id"))


@pytest.fixture
def company() -> Insurer:
    return InsurerFactory(slug="probe-life")


def test_one_insurer_scoring_one_subject_with_many_manuals_is_flagged(company: Insurer) -> None:
    make_requests(company, 3, manuals=["charlson-acci", "elixhauser-vw", "life-debits"], spacing=timedelta(days=2))
    make_requests(company, 2, subject_key=OTHER_SUBJECT, manuals=["charlson-acci", "elixhauser-vw"])
    assert flags_evaluate().raised == 1
    (flag,) = flags(FlagKind.SUBJECT_MANUALS)
    assert (flag.insurer_id, flag.subject_key, flag.count, flag.threshold) == (company.pk, SUBJECT, 3, 3)
    assert flag.status == "open"
    assert flag.window_end - flag.window_start == timedelta(days=4)


def test_the_same_manual_again_or_rejected_requests_are_not_an_oracle(company: Insurer) -> None:
    make_requests(company, 5, manuals=["charlson-acci"])
    make_requests(company, 2, manuals=["elixhauser-vw", "life-debits"], status="rejected", reason="rate_limited")
    flags_evaluate()
    assert flags(FlagKind.SUBJECT_MANUALS) == []


def test_manuals_outside_the_window_do_not_count(company: Insurer) -> None:
    make_requests(company, 1, manuals=["life-debits"], at=timezone.now() - timedelta(days=31))
    make_requests(company, 2, manuals=["charlson-acci", "elixhauser-vw"])
    flags_evaluate()
    assert flags(FlagKind.SUBJECT_MANUALS) == []


def test_one_subject_queried_by_many_insurers_is_flagged(company: Insurer) -> None:
    others = [InsurerFactory(slug=f"other-{index}") for index in range(2)]
    for insurer in [company, *others]:
        make_requests(insurer, 1)
    make_requests(company, 1, subject_key=OTHER_SUBJECT)
    make_requests(others[0], 1, subject_key=OTHER_SUBJECT)
    flags_evaluate()
    (flag,) = flags(FlagKind.SUBJECT_INSURERS)
    assert (flag.insurer_id, flag.subject_key, flag.count) == (None, SUBJECT, 3)


def test_a_burst_from_one_insurer_and_from_one_api_key_is_flagged(company: Insurer) -> None:
    key, _ = api_key_create(insurer=company, name="core")
    make_requests(company, 20, api_key=key, subject_key=OTHER_SUBJECT, spacing=timedelta(seconds=20))
    flags_evaluate()
    burst = flags(FlagKind.BURST)
    assert sorted((flag.api_key_id or 0, flag.count) for flag in burst) == [(0, 20), (key.pk, 20)]
    assert all(flag.insurer_id == company.pk and flag.subject_key == "" for flag in burst)


def test_requests_spread_wider_than_the_burst_window_are_not_a_burst(company: Insurer) -> None:
    key, _ = api_key_create(insurer=company, name="core")
    # 20 requests one minute apart: never more than 11 within 10 minutes.
    make_requests(company, 20, api_key=key, spacing=timedelta(minutes=1))
    make_requests(InsurerFactory(slug="quiet-life"), 19, spacing=timedelta(seconds=5))
    flags_evaluate()
    assert flags(FlagKind.BURST) == []


def refused(
    insurer: Insurer, count: int, *, identity: str = "mismatch", consent: str = "valid", **options: Any
) -> list[UnderwritingRequest]:
    """Requests refused as ``not_verified``, with the check that failed recorded for staff."""
    made = make_requests(insurer, count, status="rejected", reason="not_verified", **options)
    VerificationFailure.objects.bulk_create(
        VerificationFailure(request=request, identity=identity, consent=consent) for request in made
    )
    return made


def test_many_identity_mismatches_from_one_api_key_and_from_one_insurer_are_flagged(company: Insurer) -> None:
    key, _ = api_key_create(insurer=company, name="fishing")
    honest, _ = api_key_create(insurer=company, name="honest")
    refused(company, 5, api_key=key, spacing=timedelta(hours=1))
    refused(company, 4, api_key=honest)
    refused(company, 3, api_key=honest, identity="matched", consent="invalid")  # not a name guess
    refused(company, 3, api_key=honest, identity="unknown")  # not a name guess either
    flags_evaluate()
    found = flags(FlagKind.IDENTITY_MISMATCHES)
    assert {(flag.insurer_id, flag.api_key_id, flag.count, flag.threshold) for flag in found} == {
        (company.pk, key.pk, 5, 5),
        (company.pk, None, 9, 5),  # the insurer as a whole: both keys
    }


def test_mismatches_spread_over_keys_and_the_portal_are_flagged_for_the_insurer(company: Insurer) -> None:
    for index in range(3):
        key, _ = api_key_create(insurer=company, name=f"key-{index}")
        refused(company, 2, api_key=key)
    refused(company, 2)  # the portal and batches: no key
    flags_evaluate()
    (flag,) = flags(FlagKind.IDENTITY_MISMATCHES)
    assert (flag.insurer_id, flag.api_key_id, flag.count) == (company.pk, None, 8)


def test_mismatches_below_the_threshold_raise_nothing(company: Insurer) -> None:
    key, _ = api_key_create(insurer=InsurerFactory(slug="other-life"), name="core")
    refused(key.insurer, 4, api_key=key)
    # Five, but not within 24 hours of each other.
    refused(company, 5, spacing=timedelta(hours=7))
    flags_evaluate()
    assert MisuseFlag.objects.count() == 0


def test_evaluating_again_does_not_duplicate_and_updates_the_counts(company: Insurer) -> None:
    make_requests(company, 3, manuals=["charlson-acci", "elixhauser-vw", "life-debits"])
    assert flags_evaluate().raised == 1
    assert flags_evaluate().raised == 0
    make_requests(company, 1, manuals=["charlson-quan2011"])
    report = flags_evaluate()
    assert (report.raised, report.updated) == (0, 1)
    (flag,) = MisuseFlag.objects.all()
    assert flag.count == 4
    assert AuditEntry.objects.filter(action="flag.raise").count() == 1


def test_an_acknowledged_flag_is_not_raised_again_and_a_closed_one_only_for_new_requests(company: Insurer) -> None:
    reviewer = UserFactory(username="officer", is_staff=True)
    make_requests(company, 3, manuals=["charlson-acci", "elixhauser-vw", "life-debits"], at=timezone.now()
                  - timedelta(hours=1))  # fmt: skip
    flags_evaluate()
    flag = MisuseFlag.objects.get()
    assert flag_review(flag_id=flag.pk, status="acknowledged", reviewed_by=reviewer)
    flags_evaluate()
    assert MisuseFlag.objects.count() == 1
    assert flag_review(flag_id=flag.pk, status="closed", reviewed_by=reviewer, note="broker retried, explained")
    flags_evaluate()
    assert MisuseFlag.objects.count() == 1  # the closed flag settled these requests
    make_requests(company, 3, manuals=["charlson-acci", "elixhauser-vw", "charlson-quan2011"])
    flags_evaluate()
    assert list(MisuseFlag.objects.order_by("id").values_list("status", flat=True)) == ["closed", "open"]
    reviews = AuditEntry.objects.filter(action="flag.review").order_by("id")
    assert [(entry.actor, entry.detail["status"]) for entry in reviews] == [
        ("officer", "acknowledged"), ("officer", "closed"),
    ]  # fmt: skip
    flag.refresh_from_db()
    assert (flag.reviewed_by, flag.review_note) == (reviewer, "broker retried, explained")


def test_flags_and_their_audit_entries_hold_only_the_pseudonymous_key(company: Insurer) -> None:
    make_requests(company, 3, manuals=["charlson-acci", "elixhauser-vw", "life-debits"])
    flags_evaluate()
    entry = AuditEntry.objects.get(action="flag.raise")
    assert entry.detail["subject"] == SUBJECT[:12]
    assert SUBJECT not in json.dumps(entry.detail)
    assert "370214" not in json.dumps(list(MisuseFlag.objects.values()), default=str)


def test_the_beat_task_evaluates(company: Insurer) -> None:
    from underwriting.tasks import evaluate_flags

    make_requests(company, 3, manuals=["charlson-acci", "elixhauser-vw", "life-debits"])
    assert evaluate_flags.apply().get() == 1
    assert evaluate_flags.apply().get() == 0
