"""A request whose subject's records are held (record linkage) is never answered on partial records.

The insurer gets admission's neutral ``not_verified``, exactly as for an unknown resident ID, so the
outcome says nothing of whether the person exists; bureau staff see the cause (``VerificationFailure``
``held`` and the request's audit trail), not "subject erased". Once staff confirm the link, a new request
is answered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from audit.models import AuditEntry
from datadomain import linkage
from datadomain.custodian import keypair_create
from tenants.models import Insurer
from tests import fhir
from tests.underwriting.conftest import ALICE_BIRTH, ALICE_ID, client_for, request_body
from underwriting.models import RatingManual, ScoringInput, UnderwritingRequest, VerificationFailure
from underwriting.services.pipeline import stage_drain

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("approved_manuals", "in_process_tasks", "held")]
URL = "/api/v1/underwriting-requests"


@pytest.fixture
def custodian_key(db: None) -> Any:
    return keypair_create(bits=2048)


def submit(insurer: Insurer, applicant: dict[str, str], reference: str) -> str:
    response = client_for(insurer).post(URL, request_body(applicant, reference=reference), format="json")
    assert response.status_code == 202
    return str(response.json()["id"])


def test_a_held_subject_is_refused_neutrally_with_its_own_cause_for_staff(
    insurer: Insurer,
    alice: dict[str, str],
    ingest: Callable[[list[dict[str, Any]]], None],
    approved_manuals: list[RatingManual],
    custodian_key: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A second hospital sends the same resident ID under another name: the link waits for a coder.
    ingest([fhir.patient("pat-b9", ALICE_ID, "李娜", ALICE_BIRTH), fhir.condition("pat-b9", "C78.0")])
    held_id = submit(insurer, alice, "H-1")
    assert UnderwritingRequest.objects.get(pk=held_id).status == "extracting"  # verified: identity and consent

    stage_drain("extract")

    request = UnderwritingRequest.objects.get(pk=held_id)
    assert (request.status, request.reason, request.tier_code) == ("rejected", "not_verified", "")
    assert not ScoringInput.objects.filter(request_id=held_id).exists()
    # Staff: the cause, not "erased".
    failure = VerificationFailure.objects.get(request_id=held_id)
    assert (failure.identity, failure.consent) == ("held", "valid")
    assert AuditEntry.objects.filter(action="request.records_held", target_id=held_id).exists()
    assert "records are held" in caplog.text
    assert "erased" not in caplog.text
    # Insurer: the same answer as for a resident ID the domain does not know.
    view = client_for(insurer).get(f"{URL}/{held_id}").json()
    unknown_id = submit(insurer, {"resident_id": fhir.resident_id(ALICE_BIRTH, sequence=901), "name": "王丽华"}, "H-2")
    unknown = client_for(insurer).get(f"{URL}/{unknown_id}").json()
    assert (view["status"], view["reason"]) == (unknown["status"], unknown["reason"]) == ("rejected", "not_verified")
    assert set(view) == set(unknown)
    assert "held" not in str(view)
    assert "link" not in str(view)

    # A coder confirms the link: the next request is answered.
    assert linkage.confirm("pat-b9", by="coder") is True
    answered = submit(insurer, alice, "H-3")
    stage_drain("extract")
    assert UnderwritingRequest.objects.get(pk=answered).status == "scoring"


def test_a_subject_erased_after_verification_still_fails(
    insurer: Insurer, alice: dict[str, str], custodian_key: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from datadomain.models import Patient

    request_id = submit(insurer, alice, "E-1")
    Patient.objects.filter(resource_id="pat-alice").delete()  # gone, its consent untouched
    stage_drain("extract")
    assert UnderwritingRequest.objects.get(pk=request_id).status == "failed"
    assert not VerificationFailure.objects.filter(request_id=request_id).exists()
    assert "erased since it was verified" in caplog.text
