"""Rate-limit overrides: granted by a named officer with a reason and an expiry, honoured by request
submission, spent once per use, and both the grant and the use are audited."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEntry
from tests.factories import UserFactory
from tests.underwriting.conftest import ALICE_ID, ALICE_NAME, request_body
from underwriting.errors import UnderwritingError
from underwriting.models import RateLimitOverride, RatingManual, UnderwritingRequest
from underwriting.services.overrides import override_grant, override_grant_for_request

URL = "/api/v1/underwriting-requests"
pytestmark = pytest.mark.django_db


def reasons(api: APIClient, alice: dict[str, str], first: int, last: int) -> list[str | None]:
    return [api.post(URL, request_body(alice, reference=f"R{i}"), format="json").json()["reason"] for i in
            range(first, last)]  # fmt: skip


def test_an_override_lets_one_request_through_the_rate_limit_and_is_audited(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual], settings: Any
) -> None:
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 2
    assert reasons(api, alice, 0, 3) == [None, None, "rate_limited"]
    officer = UserFactory(username="privacy-officer", is_staff=True)
    limited = UnderwritingRequest.objects.get(reference="R2")
    override = override_grant_for_request(
        request_id=str(limited.pk), reason="Applicant changed policy; insurer asked by letter 2026-11-20",
        expires_at=timezone.now() + timedelta(days=2), granted_by=officer,
    )  # fmt: skip
    assert (override.insurer_id, override.subject_key) == (limited.insurer_id, limited.subject_key)
    assert reasons(api, alice, 3, 5) == [None, "rate_limited"]  # an allowance of one
    override.refresh_from_db()
    assert override.used == 1
    grant = AuditEntry.objects.get(action="rate_limit_override.grant")
    assert (grant.actor, grant.detail["subject"], grant.detail["allowance"]) == (
        "privacy-officer", limited.subject_key[:12], 1,
    )  # fmt: skip
    use = AuditEntry.objects.get(action="rate_limit_override.use")
    assert use.target_id == str(override.pk)
    assert use.detail["request"] == str(UnderwritingRequest.objects.get(reference="R3").pk)
    text = str(list(AuditEntry.objects.values("detail")))
    assert ALICE_ID not in text
    assert ALICE_NAME not in text


def test_an_expired_override_or_another_insurers_does_not_count(
    api: APIClient, other_api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual], settings: Any
) -> None:
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 1
    assert reasons(api, alice, 0, 2) == [None, "rate_limited"]
    assert other_api.post(URL, request_body(alice), format="json").json()["reason"] is None
    limited = UnderwritingRequest.objects.get(reference="R1")
    other = UnderwritingRequest.objects.exclude(insurer_id=limited.insurer_id).get()
    officer = UserFactory(username="officer", is_staff=True)
    override_grant_for_request(request_id=str(other.pk), reason="other insurer only",
                               expires_at=timezone.now() + timedelta(days=1), granted_by=officer)  # fmt: skip
    expired = override_grant_for_request(request_id=str(limited.pk), reason="expires at once",
                                         expires_at=timezone.now() + timedelta(days=1), granted_by=officer)  # fmt: skip
    RateLimitOverride.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert reasons(api, alice, 2, 3) == ["rate_limited"]
    assert not AuditEntry.objects.filter(action="rate_limit_override.use").exists()


@pytest.mark.parametrize(
    ("reason", "days", "allowance"), [("", 1, 1), ("why", 0, 1), ("why", 31, 1), ("why", 1, 0), ("why", 1, 11)]
)
def test_an_override_needs_a_reason_a_near_expiry_and_a_small_allowance(reason: str, days: int, allowance: int) -> None:
    from tests.factories import InsurerFactory

    with pytest.raises(UnderwritingError):
        override_grant(
            insurer_id=InsurerFactory().pk, subject_key="ab" * 32, reason=reason,
            expires_at=timezone.now() + timedelta(days=days), granted_by=UserFactory(), allowance=allowance,
        )  # fmt: skip
    assert not RateLimitOverride.objects.exists()


def test_the_per_subject_limit_spans_insurers_and_no_override_lifts_it(
    api: APIClient, other_api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual], settings: Any
) -> None:
    """Each insurer stays within its own limit, yet the person is asked about only so often in all:
    more insurers (or manuals) do not mean more samples of one person's score."""
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 10
    settings.UNDERWRITING_SUBJECT_LIMIT_COUNT = 3
    assert reasons(api, alice, 0, 2) == [None, None]
    assert reasons(other_api, alice, 2, 4) == [None, "rate_limited"]
    officer = UserFactory(username="privacy-officer", is_staff=True)
    limited = UnderwritingRequest.objects.get(reference="R3")
    override_grant_for_request(
        request_id=str(limited.pk), reason="Insurer asked by letter 2026-11-20",
        expires_at=timezone.now() + timedelta(days=2), granted_by=officer,
    )  # fmt: skip
    assert reasons(other_api, alice, 4, 5) == ["rate_limited"]
    assert RateLimitOverride.objects.get().used == 0  # not spent on a request it could not let through
    settings.UNDERWRITING_SUBJECT_LIMIT_COUNT = 100
    settings.UNDERWRITING_SUBJECT_LIMIT_YEAR = 3
    assert reasons(api, alice, 5, 6) == ["rate_limited"]  # the yearly bound too
