"""Attack: the insurer keeps a request running after the resident withdrew consent.

The resident approves a request on the resident page, then changes their mind and withdraws consent for
that insurer before the data domain has read their records (the request waits in ``extracting``; here
the stage is held until the test drains it). Staff may also withdraw a resident's consent for every
insurer. Whatever the insurer does, the extraction stage checks the consent again: the request ends
``rejected`` (``consent_withdrawn``), no record of the subject is read, nothing reaches scoring and no
tier comes back. Another resident's approved request in the same chunk goes on."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from datadomain import services as domain
from datadomain.custodian import keypair_create
from tenants.models import Insurer
from tests.residents.conftest import (  # noqa: F401 - fixtures
    ALICE_PHONE,
    BOB_ID,
    BOB_PHONE,
    _clean_outbox,
    alice_with_phone,
    bob_with_phone,
    resident_mode,
)
from tests.residents.test_views import sign_in
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
from underwriting.services.pipeline import stage_drain

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("approved_manuals", "in_process_tasks", "held")]
URL = "/api/v1/underwriting-requests"


@pytest.fixture
def custodian_key(db: None) -> Any:
    return keypair_create(bits=2048)


def submit(insurer: Insurer, applicant: dict[str, str], reference: str) -> str:  # noqa: F811
    response = client_for(insurer).post(URL, request_body(applicant, reference=reference), format="json")
    assert response.status_code == 202
    return str(response.json()["id"])


def test_withdrawal_on_the_resident_page_after_approval_stops_the_request_before_its_records_are_read(
    resident_mode: Insurer,  # noqa: F811
    alice_with_phone: dict[str, str],  # noqa: F811
    bob_with_phone: dict[str, str],  # noqa: F811
    custodian_key: Any,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alices, bobs = submit(resident_mode, alice_with_phone, "W-1"), submit(resident_mode, bob_with_phone, "W-2")
    alice, bob = Client(), Client()
    sign_in(alice, ALICE_ID, ALICE_PHONE, django_capture_on_commit_callbacks)
    sign_in(bob, BOB_ID, BOB_PHONE, django_capture_on_commit_callbacks)
    assert alice.post(f"/residents/requests/{alices}/decide", {"action": "approve"}).status_code == 302
    assert bob.post(f"/residents/requests/{bobs}/decide", {"action": "approve"}).status_code == 302
    assert UnderwritingRequest.objects.get(pk=alices).status == "extracting"
    # Alice changes her mind before the domain has read anything.
    assert alice.post("/residents/consents/withdraw", {"insurer": resident_mode.slug}).status_code == 302

    read: list[str] = []
    original = domain.encrypted_feature_vectors

    def spy(**kwargs: Any) -> Any:
        read.extend(kwargs["subject_keys"])
        return original(**kwargs)

    monkeypatch.setattr(domain, "encrypted_feature_vectors", spy)
    stage_drain("extract")

    stopped = UnderwritingRequest.objects.get(pk=alices)
    assert (stopped.status, stopped.reason) == ("rejected", "consent_withdrawn")
    assert stopped.subject_key not in read
    assert not ScoringInput.objects.filter(request_id=alices).exists()
    assert UnderwritingRequest.objects.get(pk=bobs).status == "scoring"  # the other resident's goes on
    view = client_for(resident_mode).get(f"{URL}/{alices}").json()
    assert (view["status"], view["reason"], view.get("result")) == ("rejected", "consent_withdrawn", None)


def test_staff_withdrawal_for_every_insurer_stops_a_declared_consent_request(
    insurer: Insurer,  # noqa: F811
    alice_with_phone: dict[str, str],  # noqa: F811
    custodian_key: Any,
) -> None:
    request_id = submit(insurer, alice_with_phone, "W-3")
    request = UnderwritingRequest.objects.get(pk=request_id)
    assert request.status == "extracting"
    assert domain.subject_consents_withdraw(subject_key=request.subject_key, by="dpo") >= 1

    stage_drain("extract")
    stage_drain("score")

    request.refresh_from_db()
    assert (request.status, request.reason, request.tier_code) == ("rejected", "consent_withdrawn", "")
    assert not ScoringInput.objects.filter(request_id=request_id).exists()
