"""The resident page: sign in with a code, approve, decline, withdraw, download the report."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tenants.models import Insurer
from tests.residents.conftest import ALICE_PHONE, codes_sent_to
from tests.underwriting.conftest import ALICE_ID, client_for, request_body
from underwriting.models import UnderwritingRequest

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("approved_manuals", "held", "in_process_tasks")]
URL = "/api/v1/underwriting-requests"


def submit(insurer: Insurer, applicant: dict[str, str], reference: str = "APP-1") -> str:
    response = client_for(insurer).post(URL, request_body(applicant, reference=reference), format="json")
    assert response.status_code == 202
    return str(response.json()["id"])


def sign_in(client: Client, resident_id: str, phone: str, capture: Any) -> None:
    with capture(execute=True):
        response = client.post("/residents/sign-in", {"resident_id": resident_id})
    assert response.status_code == 302
    [code] = codes_sent_to(phone)[-1:]
    response = client.post("/residents/sign-in/code", {"code": code})
    assert response["Location"] == "/residents/"


def test_a_resident_signs_in_and_approves(
    resident_mode: Insurer, alice_with_phone: dict[str, str], django_capture_on_commit_callbacks: Any
) -> None:
    request_id = submit(resident_mode, alice_with_phone)
    client = Client()
    sign_in(client, ALICE_ID, ALICE_PHONE, django_capture_on_commit_callbacks)
    page = client.get("/residents/").content.decode()
    assert "Ping Life" in page
    assert ALICE_ID not in page
    assert ALICE_ID[:6] + "********" + ALICE_ID[-4:] in page
    response = client.post(f"/residents/requests/{request_id}/decide", {"action": "approve"})
    assert response.status_code == 302
    assert UnderwritingRequest.objects.get(pk=request_id).status == "extracting"


def test_a_resident_declines_withdraws_and_downloads_the_report(
    resident_mode: Insurer, alice_with_phone: dict[str, str], django_capture_on_commit_callbacks: Any
) -> None:
    first, second = submit(resident_mode, alice_with_phone), submit(resident_mode, alice_with_phone, "APP-2")
    client = Client()
    sign_in(client, ALICE_ID, ALICE_PHONE, django_capture_on_commit_callbacks)
    client.post(f"/residents/requests/{first}/decide", {"action": "decline"})
    assert UnderwritingRequest.objects.get(pk=first).reason == "consent_declined"
    client.post(f"/residents/requests/{second}/decide", {"action": "approve"})
    assert "ping-life" in client.get("/residents/").content.decode()  # a consent in force, with withdrawal
    client.post("/residents/consents/withdraw", {"insurer": "ping-life"})
    assert 'name="insurer" value="ping-life"' not in client.get("/residents/").content.decode()
    report = client.get("/residents/report.csv")
    assert report["Content-Type"].startswith("text/csv")
    text = report.content.decode("utf-8-sig")
    assert text.count("Ping Life") == 2
    assert ALICE_ID not in text


def test_the_page_answers_alike_for_an_id_nobody_holds(db: None, django_capture_on_commit_callbacks: Any) -> None:
    client = Client()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/residents/sign-in", {"resident_id": ALICE_ID})
    assert response["Location"] == "/residents/sign-in/code"
    assert codes_sent_to(ALICE_PHONE) == []
    assert client.post("/residents/sign-in/code", {"code": "123456"}).status_code == 200


def test_the_page_is_in_chinese_by_default_and_english_on_request(db: None) -> None:
    assert '<html lang="zh-hans">' in Client().get("/residents/sign-in").content.decode()
    english = Client(headers={"accept-language": "en"}).get("/residents/sign-in").content.decode()
    assert "Send me a code" in english


def test_the_forms_tie_errors_to_their_fields(db: None, django_capture_on_commit_callbacks: Any) -> None:
    client = Client(headers={"accept-language": "en"})
    page = client.post("/residents/sign-in", {"resident_id": "12345"}).content.decode()
    assert 'aria-invalid="true"' in page
    assert 'aria-describedby="id_resident_id_helptext id_resident_id_error"' in page
    assert 'id="id_resident_id_error"' in page
    assert 'id="id_resident_id_helptext"' in page
    assert '<label for="id_resident_id">' in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/residents/sign-in", {"resident_id": ALICE_ID})
    page = client.post("/residents/sign-in/code", {"code": "12ab"}).content.decode()
    assert 'autocomplete="one-time-code"' in page
    assert 'inputmode="numeric"' in page
    assert 'aria-describedby="id_code_error"' in page
    assert 'id="id_code_error"' in page
    assert "style=" not in page  # the Content-Security-Policy refuses inline styles


def test_the_manual_is_named_in_the_residents_language(
    resident_mode: Insurer, alice_with_phone: dict[str, str], django_capture_on_commit_callbacks: Any
) -> None:
    request_id = submit(resident_mode, alice_with_phone)
    manual = UnderwritingRequest.objects.select_related("manual").get(pk=request_id).manual
    assert manual is not None
    client = Client()  # Chinese by default
    sign_in(client, ALICE_ID, ALICE_PHONE, django_capture_on_commit_callbacks)
    page = client.get("/residents/").content.decode()
    report = client.get("/residents/report.csv").content.decode("utf-8-sig")
    english_title = str(manual.title)
    assert english_title not in page
    assert english_title not in report
    assert "Charlson" in page  # the Chinese title keeps the index's name
    assert any("\u4e00" <= ch <= "\u9fff" for line in report.splitlines()[1:] for ch in line.split(",")[3])
