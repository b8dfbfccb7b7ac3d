"""Attack: finding an erased resident again through the resident page's rows.

A resident who had a phone number on file, asked for sign-in codes and was told of a request is erased
(PIPL Art. 47, the bureau's admin). Afterwards someone with a copy of the identity zone's tables, or anyone
who knows the resident ID and asks the resident page for a code, looks for what is left: the phone number,
the sign-in attempts and the message outcomes keyed by the person's subject key. Nothing is left, and no
message goes out. On PostgreSQL, the web zone (which runs the erasure) may delete those rows and still
may not read the number."""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps
from django.test import Client

from audit.models import AuditEntry
from datadomain import services as domain
from datadomain.models.identity import MessageDelivery, PatientContact, ResidentCode
from tenants.models import Insurer
from tests.residents.conftest import (  # noqa: F401 - fixtures
    ALICE_PHONE,
    _clean_outbox,
    alice_with_phone,
    codes_sent_to,
    resident_mode,
)
from tests.security.conftest import POSTGRES, Roles
from tests.underwriting.conftest import (  # noqa: F401 - fixtures
    ALICE_ID,
    approved_manuals,
    author,
    client_for,
    insurer,
    request_body,
    reviewer,
)
from underwriting.services.subjects import subject_erase

pytestmark = [pytest.mark.usefixtures("in_process_tasks")]


@pytest.mark.django_db
@pytest.mark.usefixtures("approved_manuals")
def test_erasure_leaves_no_phone_code_or_message_row_and_sends_nothing_after(
    resident_mode: Insurer,  # noqa: F811
    alice_with_phone: dict[str, str],  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    key = domain.subject_key_for(ALICE_ID)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(resident_mode).post(
            "/api/v1/underwriting-requests", request_body(alice_with_phone), format="json"
        )
    assert response.status_code == 202
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            Client().post("/residents/sign-in", {"resident_id": ALICE_ID})
    assert len(codes_sent_to(ALICE_PHONE)) == 2
    assert MessageDelivery.objects.filter(subject_key=key).count() == 3  # a notice and two codes
    assert ResidentCode.objects.filter(subject_key=key).count() == 2

    erasure = subject_erase(resident_id=ALICE_ID, by="dpo")

    assert erasure.resident_contact == 6
    for model in (PatientContact, ResidentCode, MessageDelivery):
        assert not model.objects.filter(subject_key=key).exists(), model.__name__
    assert not PatientContact.objects.filter(phone=ALICE_PHONE).exists()
    entry = AuditEntry.objects.filter(action="subject.erase").latest("pk")
    assert entry.detail["resident_contact"] == 6
    assert ALICE_PHONE not in str(entry.detail)

    # Someone who knows the ID asks for a code: the page answers as ever, and nothing goes anywhere.
    before = len(codes_sent_to(ALICE_PHONE))
    with django_capture_on_commit_callbacks(execute=True):
        answer = Client().post("/residents/sign-in", {"resident_id": ALICE_ID})
    assert answer["Location"] == "/residents/sign-in/code"
    assert len(codes_sent_to(ALICE_PHONE)) == before
    assert not MessageDelivery.objects.filter(subject_key=key).exists()


@pytest.mark.integration
@pytest.mark.skipif(not POSTGRES, reason="database roles and privileges exist on PostgreSQL only")
def test_the_web_zone_erases_the_resident_rows_but_cannot_read_the_number(roles: Roles) -> None:
    def table(label: str) -> str:
        return str(apps.get_model(label)._meta.db_table)

    codes, messages, contacts = (
        table("datadomain.ResidentCode"),
        table("datadomain.MessageDelivery"),
        table("datadomain.PatientContact"),
    )
    assert roles.attempt("web", f"DELETE FROM {codes} WHERE subject_key = 'x'") == "ok"
    assert roles.attempt("web", f"DELETE FROM {messages} WHERE subject_key = 'x'") == "ok"
    assert roles.attempt("web", f"DELETE FROM {contacts} WHERE patient_id = -1") == "ok"
    assert roles.attempt("web", f"SELECT phone FROM {contacts}") == "denied"
    assert roles.attempt("web", f"DELETE FROM {contacts} WHERE phone = '+8613800000001'") == "denied"
