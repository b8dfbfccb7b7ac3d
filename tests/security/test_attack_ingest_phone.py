"""Attack: redirecting a resident's sign-in codes to another phone through the FHIR feeds.

The phone number residents get their codes at comes from ``Patient.telecom`` at ingest, kept in
datadomain.PatientContact (identity zone) by the ingest writer, in bulk. Whoever controls a second
hospital's feed, or replays an old version of the record, tries to put their own number there; a feed
sends malformed telecoms to break ingest. The number follows the subject's own current record only: an
older version or another hospital's copy never replaces it, a newer version without a number removes it,
and a malformed telecom never refuses the patient."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from datadomain import services as domain
from datadomain.models import Patient
from datadomain.models.identity import PatientContact
from tests import fhir
from tests.underwriting.conftest import ingest  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db
BIRTH = date(1970, 3, 4)
RID = fhir.resident_id(BIRTH, sequence=551)

Ingest = Callable[[list[dict[str, Any]]], None]


def person(version: int, telecom: Any = None, resource_id: str = "p-1", updated: str = "") -> dict[str, Any]:
    resource = fhir.patient(resource_id, RID, "陈静", BIRTH)
    resource["meta"] = {"versionId": str(version), "lastUpdated": updated or f"2026-0{version}-01T08:00:00+08:00"}
    if telecom is not None:
        resource["telecom"] = telecom
    return resource


def phone_of(resident_id: str = RID) -> str | None:
    key = domain.subject_key_for(resident_id)
    return PatientContact.objects.filter(subject_key=key).values_list("phone", flat=True).first()


def test_the_mobile_number_is_kept_and_follows_the_subjects_own_record(ingest: Ingest) -> None:  # noqa: F811
    telecom = [
        {"system": "email", "value": "chen@example.cn"},
        {"system": "phone", "value": "0532-8888 1234", "use": "home", "rank": 1},
        {"system": "phone", "value": "138 0013 8000", "use": "mobile", "rank": 2},
        {"system": "phone", "value": "139 0000 0000", "use": "old"},
    ]
    ingest([person(2, telecom)])
    assert phone_of() == "+8613800138000"
    assert PatientContact.objects.get().patient == Patient.objects.get(resident_id=RID)

    # An older version sent again, and another hospital's record of the same person: the number stays.
    ingest([person(1, [{"system": "sms", "value": "+86 137 0000 0001"}])])
    ingest([person(5, [{"system": "sms", "value": "+86 137 0000 0002"}], resource_id="other-hospital-9")])
    assert phone_of() == "+8613800138000"

    # A newer version with another number replaces it; one without any number removes it.
    ingest([person(3, [{"system": "sms", "value": "0086 136 0000 0003"}])])
    assert phone_of() == "+8613600000003"
    ingest([person(4)])
    assert phone_of() is None


@pytest.mark.parametrize(
    "telecom",
    [
        "138 0013 8000",
        [{"system": "phone", "value": "javascript:alert(1)"}],
        [{"system": "phone", "value": "1" * 40}],
        [{"system": "phone", "value": ["13800138000"]}],
        [{"system": "fax", "value": "13800138000"}],
        [{"system": "phone", "value": "13800138000", "period": {"end": "2001-01-01"}}],
        [None, 7, {"system": "phone"}],
    ],
)
def test_a_malformed_or_unusable_telecom_keeps_the_patient_and_no_number(ingest: Ingest, telecom: Any) -> None:  # noqa: F811
    ingest([person(1, telecom)])
    assert Patient.objects.filter(resident_id=RID).exists()
    assert phone_of() is None


def test_numbers_are_written_in_bulk(ingest: Ingest) -> None:  # noqa: F811
    people = []
    for sequence in range(1, 121):
        rid = fhir.resident_id(BIRTH, sequence=sequence)
        resource = fhir.patient(f"bulk-{sequence}", rid, "某人", BIRTH)
        resource["telecom"] = [{"system": "phone", "value": f"1380000{sequence:04d}", "use": "mobile"}]
        people.append(resource)
    with CaptureQueriesContext(connection) as captured:
        ingest(people)
    assert PatientContact.objects.count() == 120
    assert phone_of(fhir.resident_id(BIRTH, sequence=7)) == "+8613800000007"
    touching = [q for q in captured.captured_queries if "datadomain_patientcontact" in q["sql"]]
    assert 1 <= len(touching) <= 3  # per batch, not per patient (SQLite's executemany counts once)
