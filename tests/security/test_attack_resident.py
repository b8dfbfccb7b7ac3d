"""Attacks on resident confirmation: guessing a resident's code, acting on another resident's requests,
an insurer confirming its own request, and a request reaching scoring before the resident agreed.

Each test plays the attack through what the attacker has (the resident page over HTTP, the insurer's API
key, a worker draining the extraction stage) and asserts what it got."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tenants.models import Insurer
from tests.residents.conftest import (  # noqa: F401 - fixtures
    ALICE_PHONE,
    BOB_ID,
    BOB_PHONE,
    _clean_outbox,
    alice,
    alice_with_phone,
    bob_with_phone,
    codes_sent_to,
    resident_mode,
)
from tests.underwriting.conftest import (  # noqa: F401 - fixtures
    ALICE_ID,
    approved_manuals,
    author,
    client_for,
    insurer,
    request_body,
    reviewer,
)
from underwriting.models import ScoringInput, UnderwritingRequest
from underwriting.serializers import request_public_view
from underwriting.services.pipeline import stage_drain

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("approved_manuals", "in_process_tasks")]
URL = "/api/v1/underwriting-requests"


def submit(insurer: Insurer, applicant: dict[str, str], reference: str = "APP-1") -> str:  # noqa: F811
    response = client_for(insurer).post(URL, request_body(applicant, reference=reference), format="json")
    assert response.status_code == 202
    return str(response.json()["id"])


def ask_code(client: Client, resident_id: str, capture: Any) -> None:
    with capture(execute=True):
        assert client.post("/residents/sign-in", {"resident_id": resident_id}).status_code == 302


def test_guessing_a_code_hits_the_lock_out_before_the_right_code_is_tried(
    alice_with_phone: dict[str, str],  # noqa: F811
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.RESIDENT_CODE_SENDS = 100  # only the wrong-code lock is under test here
    attacker = Client(headers={"accept-language": "en"})  # the page answers in Chinese by default
    ask_code(attacker, ALICE_ID, django_capture_on_commit_callbacks)
    [real] = codes_sent_to(ALICE_PHONE)
    wrong = [f"{n:06d}" for n in range(1000) if f"{n:06d}" != real]
    locked = None
    for attempt, guess in enumerate(wrong[:40]):
        if attempt and attempt % 5 == 0:  # a fresh code after each spent one: the per-person lock must hold
            ask_code(attacker, ALICE_ID, django_capture_on_commit_callbacks)
        page = attacker.post("/residents/sign-in/code", {"code": guess}).content.decode()
        if "Too many wrong codes" in page:
            locked = attempt
            break
    assert locked is not None
    assert locked <= settings.RESIDENT_CODE_FAILURES
    # Locked: even the right code of a fresh attempt is not checked, and nothing is shown.
    ask_code(attacker, ALICE_ID, django_capture_on_commit_callbacks)
    fresh = codes_sent_to(ALICE_PHONE)[-1]
    attacker.post("/residents/sign-in/code", {"code": fresh})
    assert attacker.get("/residents/").status_code == 302


def test_one_resident_cannot_see_or_decide_anothers_request(
    resident_mode: Insurer,  # noqa: F811
    alice_with_phone: dict[str, str],  # noqa: F811
    bob_with_phone: dict[str, str],  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    alices = submit(resident_mode, alice_with_phone)
    bob = Client()
    ask_code(bob, BOB_ID, django_capture_on_commit_callbacks)
    bob.post("/residents/sign-in/code", {"code": codes_sent_to(BOB_PHONE)[-1]})
    page = bob.get("/residents/").content.decode()
    assert alices not in page
    assert "Ping Life" not in page
    for action in ("approve", "decline"):
        assert bob.post(f"/residents/requests/{alices}/decide", {"action": action}).status_code == 404
    assert UnderwritingRequest.objects.get(pk=alices).status == "awaiting_consent"


def test_an_insurer_cannot_confirm_its_own_request(
    resident_mode: Insurer,  # noqa: F811
    alice_with_phone: dict[str, str],  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    request_id = submit(resident_mode, alice_with_phone)
    api = client_for(resident_mode)
    # With its API key, on the resident page and on the API.
    api.post(f"/residents/requests/{request_id}/decide", {"action": "approve"})
    api.patch(f"{URL}/{request_id}", {"status": "extracting"}, format="json")
    api.post(f"{URL}/{request_id}", {"status": "extracting"}, format="json")
    # Knowing the applicant's ID, it asks for a code: the code goes to the resident's phone, not to it.
    insurer_browser = Client()
    with django_capture_on_commit_callbacks(execute=True):
        response = insurer_browser.post("/residents/sign-in", {"resident_id": ALICE_ID}, follow=True)
    [code] = codes_sent_to(ALICE_PHONE)
    assert code not in response.content.decode()
    insurer_browser.post(f"/residents/requests/{request_id}/decide", {"action": "approve"})
    assert UnderwritingRequest.objects.get(pk=request_id).status == "awaiting_consent"


def test_a_request_never_reaches_scoring_before_the_resident_confirms(
    resident_mode: Insurer,  # noqa: F811
    alice_with_phone: dict[str, str],  # noqa: F811
) -> None:
    request_id = submit(resident_mode, alice_with_phone)
    # A domain worker drains the extraction stage as often as it likes: the request is not taken.
    assert stage_drain("extract") == 0
    assert stage_drain("score") == 0
    request = UnderwritingRequest.objects.get(pk=request_id)
    assert request.status == "awaiting_consent"
    assert not ScoringInput.objects.filter(request_id=request_id).exists()


def test_waiting_looks_the_same_for_a_real_resident_a_wrong_name_and_an_unknown_id(
    resident_mode: Insurer,  # noqa: F811
    alice_with_phone: dict[str, str],  # noqa: F811
) -> None:
    from tests.security.test_attack_admission import stranger

    applicants = [alice_with_phone, {**alice_with_phone, "name": "李四"}, stranger(3)]
    views = []
    for number, applicant in enumerate(applicants):
        request = UnderwritingRequest.objects.get(pk=submit(resident_mode, applicant, reference=f"R{number}"))
        view = request_public_view(request)
        views.append({k: v for k, v in view.items() if k not in {"id", "reference", "created_at", "applicant"}})
    assert views[0] == views[1] == views[2]
    assert views[0]["status"] == "awaiting_consent"
