"""Submit one request (consent file to the domain's store), follow it to its tier, list and filter."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tenants.models import Insurer
from tests.portal.conftest import ALICE_ID, ALICE_NAME
from underwriting.models import RatingManual, RequestStatus, UnderwritingRequest

pytestmark = pytest.mark.django_db
FORM = b"%PDF-1.4 signed consent form"


def form_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "reference": "APP-100",
        "resident_id": ALICE_ID,
        "name": ALICE_NAME,
        "manual": "charlson-acci",
        "consent_reference": "CONSENT-100",
        "consent_signed_at": "2026-01-01T09:00",
        "consent_scope": ["underwriting"],
        "consent_file": SimpleUploadedFile("consent.pdf", FORM, content_type="application/pdf"),
    }
    data.update(overrides)
    return data


def test_form_offers_only_approved_manuals(uw_client: Client, approved_manuals: list[RatingManual]) -> None:
    page = uw_client.get("/portal/requests/new/").content.decode()
    for manual in approved_manuals:
        assert f'value="{manual.slug}"' in page
    assert "data-resident-id" in page


def test_rejects_a_mistyped_resident_id_on_the_server(uw_client: Client, approved_manuals: list[RatingManual]) -> None:
    wrong = ALICE_ID[:-1] + ("0" if ALICE_ID[-1] != "0" else "1")
    response = uw_client.post("/portal/requests/new/", form_data(resident_id=wrong), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert "Not a valid resident ID" in response.content.decode()
    assert wrong not in response.content.decode().replace(f'value="{wrong}"', "")
    assert not UnderwritingRequest.objects.exists()


def test_submits_and_follows_the_request_to_its_tier(
    uw_client: Client,
    insurer: Insurer,
    alice: dict[str, str],
    approved_manuals: list[RatingManual],
    custodian_key: Any,
    run_on_commit: Callable[..., Any],
    settings: Any,
) -> None:
    with run_on_commit():
        response = uw_client.post("/portal/requests/new/", form_data())
    assert response.status_code == 302
    request = UnderwritingRequest.objects.get(insurer=insurer)
    assert response["Location"] == f"/portal/requests/{request.pk}/"
    assert request.status == RequestStatus.COMPLETED
    assert request.tier_code == "D"
    # The signed form is in the domain's store, named by its hash; the request knows only the hash.
    digest = hashlib.sha256(FORM).hexdigest()
    assert (Path(settings.CONSENT_STORE_DIR) / digest[:2] / digest).read_bytes() == FORM
    page = uw_client.get(response["Location"], HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "tier-big" in page
    assert ">D<" in page
    assert "decline" in page
    assert ALICE_ID not in page
    assert ALICE_NAME not in page
    assert request.resident_id_masked in page
    status = uw_client.get(f"/portal/requests/{request.pk}/status/").content.decode()
    assert "hx-trigger" not in status  # terminal: polling stops


def test_a_running_request_polls_for_its_status(
    uw_client: Client, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    uw_client.post("/portal/requests/new/", form_data())  # after-commit tasks never run here
    request = UnderwritingRequest.objects.get()
    assert request.status == RequestStatus.EXTRACTING
    status = uw_client.get(f"/portal/requests/{request.pk}/status/").content.decode()
    assert 'hx-trigger="every 1s"' in status


def test_double_submission_of_one_form_makes_one_request(
    uw_client: Client, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    uw_client.post("/portal/requests/new/", {**form_data(), "submission": "abc"})
    uw_client.post("/portal/requests/new/", {**form_data(), "submission": "abc"})
    assert UnderwritingRequest.objects.count() == 1


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("en", "A different consent was already recorded under this reference."),
        ("zh-hans", "此编号下已记录了另一份授权。"),
    ],
)
def test_a_consent_reference_reused_with_another_form_is_a_form_error(
    uw_client: Client, alice: dict[str, str], approved_manuals: list[RatingManual], language: str, message: str
) -> None:
    uw_client.post("/portal/requests/new/", form_data())
    other_form = SimpleUploadedFile("consent.pdf", FORM + b" (another)", content_type="application/pdf")
    response = uw_client.post(
        "/portal/requests/new/", form_data(reference="APP-101", consent_file=other_form), HTTP_ACCEPT_LANGUAGE=language
    )
    assert response.status_code == 200  # the form again, not a rejected request
    assert response.context["form"].errors["consent_reference"] == [message]
    assert UnderwritingRequest.objects.count() == 1


def test_list_filters_searches_and_says_when_empty(
    uw_client: Client, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    empty = uw_client.get("/portal/requests/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "No requests yet." in empty
    uw_client.post("/portal/requests/new/", form_data(reference="APP-ONE"))
    uw_client.post("/portal/requests/new/", form_data(reference="XYZ-TWO", consent_reference="C-2"))
    page = uw_client.get("/portal/requests/?q=app-", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "APP-ONE" in page
    assert "XYZ-TWO" not in page
    page = uw_client.get("/portal/requests/?status=completed", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "No request matches these filters." in page
    page = uw_client.get("/portal/requests/?manual=charlson-acci&created_from=2020-01-01").content.decode()
    assert "APP-ONE" in page
    assert "XYZ-TWO" in page


def test_another_insurers_request_is_not_found(
    uw_client: Client, other_client: Client, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    uw_client.post("/portal/requests/new/", form_data())
    request = UnderwritingRequest.objects.get()
    assert other_client.get(f"/portal/requests/{request.pk}/").status_code == 404
    assert other_client.get(f"/portal/requests/{request.pk}/status/").status_code == 404
    assert "APP-100" not in other_client.get("/portal/requests/").content.decode()


def test_dashboard_draws_the_charts(
    uw_client: Client,
    alice: dict[str, str],
    approved_manuals: list[RatingManual],
    custodian_key: Any,
    run_on_commit: Callable[..., Any],
) -> None:
    with run_on_commit():
        uw_client.post("/portal/requests/new/", form_data())
    page = uw_client.get("/portal/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert page.count("<svg") >= 2
    assert "charlson-acci" in page
    assert "p99" in page


def test_a_rate_limited_rejection_says_the_limit_the_retry_date_and_the_override_route(
    uw_client: Client, insurer: Insurer, alice: dict[str, str], approved_manuals: list[RatingManual], settings: Any
) -> None:
    from django.utils import timezone

    from tests.underwriting.conftest import client_for, request_body

    settings.UNDERWRITING_RATE_LIMIT_COUNT = 2
    api = client_for(insurer)
    for index in range(3):
        api.post("/api/v1/underwriting-requests", request_body(alice, reference=f"LIM-{index}"), format="json")
    first = UnderwritingRequest.objects.get(reference="LIM-0")
    limited = UnderwritingRequest.objects.get(reference="LIM-2")
    assert limited.reason == "rate_limited"
    page = uw_client.get(f"/portal/requests/{limited.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "What to do next" in page
    assert "at most 2 requests about one applicant in 30 days" in page
    retry = timezone.localdate(first.created_at + timezone.timedelta(days=30))
    assert f"from {retry:%Y-%m-%d}" in page
    assert "override" in page
    accepted = uw_client.get(f"/portal/requests/{first.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "What to do next" not in accepted
