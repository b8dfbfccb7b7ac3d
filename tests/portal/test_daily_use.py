"""What the insurer's staff meet every day, outside the browser: request times, downloads, forms, the
dashboard's figures, tier badges, manual titles and labels in the user's language, API errors in one
language. The same properties in a real browser are in test_browser_daily_use.py."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from insurer_portal.models import Insurer
from tests.underwriting.conftest import client_for, request_body
from underwriting.models import RatingManual, UnderwritingRequest

pytestmark = pytest.mark.django_db
API = "/api/v1/underwriting-requests"


@pytest.fixture
def api(insurer: Insurer) -> APIClient:
    return client_for(insurer)


def test_a_request_rejected_at_admission_never_completes_before_it_was_created(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    # Rejected requests are inserted already terminal: created_at and completed_at come from one reading of
    # the clock (created_at used to be read again at the INSERT, microseconds after completed_at).
    for index in range(5):
        response = api.post(API, request_body(alice, reference=f"T-{index}", manual="no-such-manual"), format="json")
        assert response.json()["reason"] == "manual_not_approved"
    for row in UnderwritingRequest.objects.all():
        assert row.completed_at is not None
        assert row.completed_at >= row.created_at
