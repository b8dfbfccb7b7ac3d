"""Subject rights for the privacy officer (PIPL Art. 24, 45, 47): the access report, consent withdrawal,
erasure and the four-eyes explanation, from a resident ID typed into a form. The ID and the name never
reach a URL, a log line, an audit event or an error message."""

from __future__ import annotations

import csv
import io
import logging
import re
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from audit import roles
from audit.models import Approval, AuditEntry
from audit.services import audit_chain_verify
from datadomain import services as domain
from datadomain.models import Condition, Consent, EncryptedFeatureVector, Patient, QuarantinedLine
from tests import fhir
from tests.governance.conftest import ALICE_ID, ALICE_NAME, StaffFactory, assert_no_personal_data, signed_in
from tests.underwriting.conftest import ALICE_BIRTH, request_body
from underwriting.models import RejectReason, UnderwritingRequest

pytestmark = pytest.mark.django_db
PAGE = "/admin/subject-rights/"
SUBJECT_REF = domain.subject_key_for(ALICE_ID)[:12]


@pytest.fixture(autouse=True)
def every_log_line(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.DEBUG)
    yield
    assert ALICE_ID not in caplog.text
    assert ALICE_NAME not in caplog.text


@pytest.fixture
def two_insurers_asked(alice_decision: str, other_api: Any, django_capture_on_commit_callbacks: Any) -> list[str]:
    """Ping Life got a decision about Alice; Other Life sent the wrong name and was refused."""
    with django_capture_on_commit_callbacks(execute=True):
        body = request_body({"resident_id": ALICE_ID, "name": "李四"}, reference="OTHER-1")
        refused = other_api.post("/api/v1/underwriting-requests", body, format="json").json()["id"]
    return [alice_decision, refused]


@pytest.fixture
def officer(staff: StaffFactory) -> Client:
    return signed_in(staff(roles.PRIVACY_OFFICER, "pia"))


def post(client: Client, op: str, **data: Any) -> Any:
    return client.post(PAGE, {"op": op, "resident_id": ALICE_ID, **data})


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_the_access_report_shows_which_insurers_asked_when_under_which_manual_and_the_outcome(
    officer: Client, two_insurers_asked: list[str]
) -> None:
    response = post(officer, "report")
    assert response.status_code == 200
    assert response.request["PATH_INFO"] == PAGE  # the ID travelled in the body only
    report = response.context["report"]
    rows = {row.insurer: row for row in report.requests}
    assert set(rows) == {"Ping Life", "Other Life"}
    decided, refused = rows["Ping Life"], rows["Other Life"]
    assert (decided.manual_slug, decided.manual_version, decided.status, decided.tier, decided.decision) == (
        "charlson-acci", 1, "completed", "D", "decline",
    )  # fmt: skip
    assert (refused.status, refused.reason, refused.tier) == (
        "rejected", str(RejectReason.NOT_VERIFIED.label), "",
    )  # fmt: skip
    assert decided.asked_at <= refused.asked_at
    # Evidence is recorded whether or not the name matched: Other Life presented consent in Alice's name too.
    assert [consent.insurer_slug for consent in report.consents] == ["ping-life", "other-life"]
    page = response.content.decode()
    assert "370214********" in page
    assert ALICE_NAME not in page
    entry = AuditEntry.objects.get(action="subject.access_report")
    assert (entry.actor, entry.target_id, entry.detail) == (
        "pia", SUBJECT_REF, {"requests": 2, "consents": 2, "download": False},
    )  # fmt: skip
    assert_no_personal_data()


def test_the_access_report_downloads_as_csv(officer: Client, two_insurers_asked: list[str]) -> None:
    response = post(officer, "download")
    assert response["Content-Type"] == "text/csv"
    assert "attachment" in response["Content-Disposition"]
    assert ALICE_ID not in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [(row["insurer"], row["manual"], row["status"], row["tier"]) for row in rows] == [
        ("Ping Life", "charlson-acci", "completed", "D"),
        ("Other Life", "charlson-acci", "rejected", ""),
    ]
    assert {row["request"] for row in rows} == set(two_insurers_asked)
    assert ALICE_ID not in body
    assert SUBJECT_REF not in body
    assert AuditEntry.objects.get(action="subject.access_report").detail["download"] is True


def test_the_privacy_officer_withdraws_the_subjects_consent(officer: Client, alice_decision: str) -> None:
    assert Consent.objects.filter(withdrawn_at__isnull=True).count() == 1
    response = post(officer, "withdraw")
    assert any("1 consent(s) withdrawn" in message for message in messages_of(response))
    assert not Consent.objects.filter(withdrawn_at__isnull=True).exists()
    withdrawal = AuditEntry.objects.get(action="consent.withdraw")
    assert (withdrawal.actor, withdrawal.detail["subject"]) == ("pia", SUBJECT_REF)
    assert_no_personal_data()


def test_erasure_destroys_vectors_records_and_identity_and_the_audit_keeps_only_the_key(
    officer: Client, two_insurers_asked: list[str]
) -> None:
    patient_id = Patient.objects.get(subject_key=domain.subject_key_for(ALICE_ID)).pk
    for number, raw in enumerate(
        [
            '{"resourceType": "Condition", "subject": {"reference": "Patient/pat-alice"}, "code": "?"}',
            f'{{"resourceType": "Patient", "identifier": [{{"value": "{ALICE_ID}"}}], "birthDate": "?"}}',
            '{"resourceType": "Condition", "subject": {"reference": "Patient/pat-someone-else"}, "code": "?"}',
        ]
    ):
        QuarantinedLine.objects.create(
            source_path="batch.ndjson", line_number=number, reason_code="invalid", reason="bad", raw_line=raw
        )  # fmt: skip
    assert EncryptedFeatureVector.objects.filter(patient_id=patient_id).exists()  # stored by the pipeline
    assert Condition.objects.filter(patient_id=patient_id).count() == 3

    review = post(officer, "erase_review")
    assert review.context["erasure"].subject_ref == SUBJECT_REF
    assert Patient.objects.filter(pk=patient_id).exists()
    unconfirmed = post(officer, "erase", erase_subject=SUBJECT_REF)
    assert any("Tick the confirmation box" in message for message in messages_of(unconfirmed))
    assert Patient.objects.filter(pk=patient_id).exists()

    response = post(officer, "erase", erase_subject=SUBJECT_REF, confirm_erasure="on")
    assert any("Subject erased" in message for message in messages_of(response))
    assert not Patient.objects.filter(pk=patient_id).exists()
    assert not EncryptedFeatureVector.objects.filter(patient_id=patient_id).exists()
    assert not Condition.objects.filter(patient_id=patient_id).exists()
    assert list(QuarantinedLine.objects.values_list("line_number", flat=True)) == [2]
    assert not Consent.objects.filter(withdrawn_at__isnull=True).exists()
    assert set(UnderwritingRequest.objects.values_list("resident_id_masked", flat=True)) == {""}
    erased = AuditEntry.objects.get(action="subject.erase")
    assert (erased.actor, erased.target_type, erased.target_id) == ("pia", "subject", SUBJECT_REF)
    assert erased.detail["identity"] == 1
    assert erased.detail["vectors"] >= 1
    assert erased.detail["conditions"] == 3
    assert erased.detail["quarantined_lines"] == 2
    assert erased.detail["requests_anonymised"] == 2
    assert_no_personal_data(response.content.decode())
    assert "370214********" not in str(list(AuditEntry.objects.values_list("detail", flat=True)))
    assert audit_chain_verify().intact

    after = post(officer, "report").context["report"]
    assert not after.known_to_domain
    assert len(after.requests) == 2  # what was disclosed to whom stays accountable, under the key alone


def typed_id(response: Any) -> str | None:
    """The value of the resident ID box on the page, or None when the box is empty."""
    found = re.search(r'<input[^>]*name="resident_id"[^>]*>', response.content.decode())
    assert found is not None
    value = re.search(r'value="([^"]*)"', found.group(0))
    return value.group(1) if value and value.group(1) else None


def test_a_mistyped_resident_id_is_refused_and_kept_for_correction_but_never_in_the_message(officer: Client) -> None:
    mistyped = ALICE_ID[:-1] + ("0" if ALICE_ID[-1] != "0" else "1")
    response = officer.post(PAGE, {"op": "report", "resident_id": mistyped})
    errors = response.context["form"].errors["resident_id"]
    assert errors == ["This is not a valid resident ID."]
    assert "report" not in response.context
    assert typed_id(response) == mistyped  # kept in the box, to be corrected
    page = response.content.decode()
    assert page.count(mistyped) == 1  # in the box only: not in the error, a link or a message
    assert 'role="alert"' in page.split(mistyped)[0]  # the error is announced, next to the box
    assert 'aria-invalid="true"' in page
    assert "no-store" in response["Cache-Control"]  # the page holding the ID is never cached
    assert not AuditEntry.objects.filter(action="subject.access_report").exists()


def test_the_id_stays_for_the_next_operation_but_not_after_an_erasure(officer: Client, alice: Any) -> None:
    report = post(officer, "report")
    assert report.request["PATH_INFO"] == PAGE
    assert not report.request.get("QUERY_STRING")
    assert typed_id(report) == ALICE_ID
    assert typed_id(post(officer, "withdraw")) == ALICE_ID
    review = post(officer, "erase_review")
    assert typed_id(review) == ALICE_ID
    assert 'name="confirm_erasure"' in review.content.decode()
    assert "checked" not in re.search(r'<input[^>]*name="confirm_erasure"[^>]*>', review.content.decode()).group(0)
    assert typed_id(post(officer, "cancel_erasure")) == ALICE_ID
    erased = post(officer, "erase", erase_subject=SUBJECT_REF, confirm_erasure="on")
    assert any("Subject erased" in message for message in messages_of(erased))
    assert typed_id(erased) is None
    assert ALICE_ID not in erased.content.decode()


def test_erasure_needs_the_confirmation_step_that_names_the_subject_and_what_goes(officer: Client, alice: Any) -> None:
    patient = Patient.objects.get(subject_key=domain.subject_key_for(ALICE_ID))
    page = post(officer, "erase_review").content.decode()
    assert "370214********" in page
    assert SUBJECT_REF in page
    for what in ("resident ID, name and birth date", "conditions, encounters and observations",
                 "encrypted feature vectors", "signed consent forms"):  # fmt: skip
        assert what in page
    assert 'class="button-danger"' in page
    assert 'value="erase"' in page
    # Ticking the box without the confirmation step (no reviewed subject) erases nothing.
    skipped = post(officer, "erase", confirm_erasure="on")
    assert any("not the one reviewed" in message for message in messages_of(skipped))
    assert Patient.objects.filter(pk=patient.pk).exists()
    # Reviewing one subject and then typing another's ID erases nobody either.
    other = fhir.resident_id(ALICE_BIRTH, sequence=125)
    switched = officer.post(
        PAGE, {"op": "erase", "resident_id": other, "erase_subject": SUBJECT_REF, "confirm_erasure": "on"}
    )
    assert any("not the one reviewed" in message for message in messages_of(switched))
    assert Patient.objects.filter(pk=patient.pk).exists()
    assert not AuditEntry.objects.filter(action="subject.erase").exists()


def test_each_reason_box_has_a_visible_label(officer: Client, two_insurers_asked: list[str]) -> None:
    page = post(officer, "report").content.decode()
    boxes = re.findall(r'<input[^>]*name="reason"[^>]*>', page)
    assert boxes
    for box in boxes:
        box_id = re.search(r'id="([^"]+)"', box).group(1)  # type: ignore[union-attr]
        assert re.search(rf'<label for="{box_id}">[^<]+</label>', page)
        assert "placeholder" not in box


def test_an_explanation_is_asked_for_approved_by_another_officer_and_shown_once(
    staff: StaffFactory, alice_decision: str, in_process_tasks: None
) -> None:
    """The explanation is computed on the data domain's queue (here in process) and shown to the officer."""
    pia, quinn = staff(roles.PRIVACY_OFFICER, "pia"), staff(roles.PRIVACY_OFFICER, "quinn")
    as_pia, as_quinn = signed_in(pia), signed_in(quinn)
    report_page = post(as_pia, "report").content.decode()
    assert f'value="{alice_decision}"' in report_page
    as_pia.post(PAGE, {"op": "ask_explanation", "request_id": alice_decision, "reason": "the subject asked why"})
    approval = Approval.objects.get(kind="subject_explanation")
    assert (approval.target, approval.requested_by_id) == (alice_decision, pia.pk)

    as_pia.post("/admin/audit/approval/", {"action": "approve", "_selected_action": [approval.pk]})
    assert Approval.objects.get().status == "pending"
    as_quinn.post("/admin/audit/approval/", {"action": "approve", "_selected_action": [approval.pk]})
    assert Approval.objects.get().status == "approved"

    shown = as_pia.post(PAGE, {"op": "show_explanation", "approval_id": approval.pk})
    explanation = shown.context["explanation"]
    assert explanation.features["charlson.chf"] == {"value": 1, "points": 1}
    assert (explanation.score, explanation.tier_code) == (6, "D")
    assert "charlson.diabwc" in shown.content.decode()
    again = as_quinn.post(PAGE, {"op": "show_explanation", "approval_id": approval.pk})
    assert "explanation" not in again.context
    assert any("already been carried out" in message for message in messages_of(again))
    explained = AuditEntry.objects.get(action="subject.explain")
    assert (explained.actor, explained.detail["requested_by"], explained.detail["approved_by"]) == (
        "pia", "pia", "quinn",
    )  # fmt: skip
    assert_no_personal_data()


def test_an_explanation_the_broker_cannot_take_is_a_message_and_leaves_the_approval_unspent(
    staff: StaffFactory,
    alice_decision: str,
    in_process_tasks: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Sent through config.celery's dispatcher: a broker outage is logged and shown, not a server error."""
    from kombu.exceptions import OperationalError

    from config.celery import app

    pia, quinn = staff(roles.PRIVACY_OFFICER, "pia"), staff(roles.PRIVACY_OFFICER, "quinn")
    as_pia = signed_in(pia)
    as_pia.post(PAGE, {"op": "ask_explanation", "request_id": alice_decision, "reason": "the subject asked why"})
    approval = Approval.objects.get(kind="subject_explanation")
    signed_in(quinn).post("/admin/audit/approval/", {"action": "approve", "_selected_action": [approval.pk]})

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(app.tasks["underwriting.tasks.explain_subject"], "apply_async", broker_down)
    with caplog.at_level(logging.WARNING, logger="config.celery"):
        shown = as_pia.post(PAGE, {"op": "show_explanation", "approval_id": approval.pk})
    assert shown.status_code == 200
    assert "explanation" not in shown.context
    assert any("did not answer in time" in message for message in messages_of(shown))
    assert "broker unavailable, subject explanation not sent (OperationalError)" in caplog.text
    assert Approval.objects.get().status == "approved"  # not executed: it can be shown once the broker is back
    assert not AuditEntry.objects.filter(action="subject.explain").exists()
