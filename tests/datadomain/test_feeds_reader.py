"""The FHIR reader on feeds written the way real R4 and STU3 servers and China's hospital systems write
them: status encodings, onset[x] forms and time zones, full-width and dagger/asterisk codes, several
codings, China's code systems, absolute and versioned references."""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
import pytest

from datadomain.catalog import load
from datadomain.ingest.parse import ConditionRow, LineError, Parser

PARSER = Parser(pepper=b"pepper", today=date(2026, 6, 30))
R4_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
STU3_VER = "http://hl7.org/fhir/condition-ver-status"
ICD10 = "http://hl7.org/fhir/sid/icd-10"


def cond(**elements: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": ICD10, "code": "C78.0"}]},
    }
    resource.update(elements)
    return resource


def parse(resource: dict[str, Any]) -> ConditionRow:
    row = PARSER.parse(orjson.dumps(resource))
    assert isinstance(row, ConditionRow)
    return row


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"coding": [{"system": R4_VER, "code": "refuted"}]}, "refuted"),
        ({"coding": [{"system": STU3_VER, "code": "refuted"}]}, "refuted"),  # STU3 system address
        ({"coding": [{"code": "refuted"}]}, "refuted"),  # no system
        ({"text": "Refuted"}, "refuted"),  # text only, capitalised
        ("refuted", "refuted"),  # STU3: a plain code
        ({"coding": [{"system": R4_VER, "code": "REFUTED"}]}, "refuted"),
        ({"coding": [{"system": R4_VER, "code": "Entered in error"}]}, "entered-in-error"),
        ({"text": "已排除"}, "refuted"),
        ({"text": "疑似"}, "provisional"),
        ({"coding": [{"system": R4_VER, "code": "differential"}]}, "differential"),
        ({"coding": [{"system": "urn:local", "display": "x"}], "text": "Confirmed"}, "confirmed"),
        (None, ""),
    ],
)
def test_verification_status_in_every_encoding(status: object, expected: str) -> None:
    resource = cond() if status is None else cond(verificationStatus=status)
    assert parse(resource).verification_status == expected


def test_an_unknown_status_is_quarantined_not_guessed() -> None:
    with pytest.raises(LineError) as caught:
        parse(cond(verificationStatus={"text": "refutado"}))
    assert caught.value.code == "unknown_verification_status"


@pytest.mark.parametrize(
    ("elements", "onset", "age"),
    [
        ({"onsetDateTime": "2020-03-04"}, date(2020, 3, 4), None),
        # 20:00 in New York on 31 December is 09:00 on 1 January in Shanghai
        ({"onsetDateTime": "2025-12-31T20:00:00-05:00"}, date(2026, 1, 1), None),
        ({"onsetDateTime": "2026-01-01T01:00:00Z"}, date(2026, 1, 1), None),
        ({"onsetDateTime": "2025-12-31T23:30:00+00:00"}, date(2026, 1, 1), None),
        ({"onsetPeriod": {"start": "2027-01-01"}, "recordedDate": "2020-01-01"}, None, None),  # future: refused
        (
            {"onsetPeriod": {"start": "2024-05-01", "end": "2024-06-01"}, "recordedDate": "2020-01-01"},
            date(2024, 5, 1),
            None,
        ),
        (
            {"onsetAge": {"value": 52, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"}},
            None,
            "52 years",
        ),
        ({"onsetAge": {"value": 7, "code": "mo"}}, None, "7 months"),
        ({"onsetRange": {"low": {"value": 40, "code": "a"}}}, None, "40 years"),
        ({"onsetString": "childhood", "recordedDate": "2019-02-03"}, date(2019, 2, 3), None),
        ({"recordedDate": "2019-02-03T10:00:00+08:00"}, date(2019, 2, 3), None),
        ({}, None, None),
    ],
)
def test_onset_in_all_its_forms(elements: dict[str, Any], onset: date | None, age: str | None) -> None:
    if "onsetPeriod" in elements and elements["onsetPeriod"]["start"] > "2026-07":
        with pytest.raises(LineError) as caught:
            parse(cond(**elements))
        assert caught.value.code == "impossible_date"
        return
    row = parse(cond(**elements))
    assert (row.onset_date, row.onset_age) == (onset, age)


@pytest.mark.parametrize(
    ("code", "codes"),
    [
        ("\uff23\uff17\uff18\uff0e\uff10", "C780"),  # full width C78.0
        ("E11.2†", "E112"),
        ("E11.2+", "E112"),
        ("N08.3*", "N083"),
        ("E11.2†N08.3*", "E112 N083"),  # dagger and asterisk pair in one code
        ("E11.2+/N08.3*", "E112 N083"),
        (" e11.200x001 ", "E11200X001"),
    ],
)
def test_codes_are_nfkc_normalised_and_marks_removed(code: str, codes: str) -> None:
    assert parse(cond(code={"coding": [{"system": ICD10, "code": code}]})).code == codes


def test_every_icd10_family_coding_counts_and_an_empty_first_coding_is_skipped() -> None:
    concept = {
        "coding": [
            {"system": ICD10, "display": "高血压"},  # no code
            {"system": "http://snomed.info/sct", "code": "38341003"},
            {"system": ICD10, "code": "I10"},
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I50.9"},
            {"system": ICD10, "code": "I10"},
        ]
    }
    row = parse(cond(code=concept))
    assert (row.code_system, row.code) == ("icd10", "I10 I509")


CHINA_SYSTEMS = [
    "urn:oid:2.16.156.10011.2.3.3.11",
    "urn:oid:2.16.156.10011.2.3.3.11.1",
    "urn:oid:2.16.156.10011.2.3.3.11.3",
    "2.16.156.10011.2.3.3.11",  # bare, as CDA-derived feeds copy the codeSystem attribute
    "2.16.156.10011.2.3.3.11.1",
    "2.16.156.10011.2.3.3.11.3",
    "urn:bureau:codesystem:icd-10-cn-clinical-1.1",
    "urn:bureau:codesystem:icd-10-cn-clinical-2.0",
    "urn:bureau:codesystem:gb-t-14396",
    "urn:bureau:codesystem:icd-10-cn-insurance",
]


@pytest.mark.parametrize("system", CHINA_SYSTEMS)
def test_china_code_systems_are_known(system: str) -> None:
    row = parse(cond(code={"coding": [{"system": system, "code": "C78.000x001"}]}))
    assert (row.code_system, row.code) == ("icd10cn", "C78000X001")
    assert "charlson.metacanc" in load().categories_of(row.code)


def test_every_china_identifier_of_the_catalog_has_a_test() -> None:
    china = {uri for uri, family in load().code_systems.items() if family == "icd10cn"}
    assert china == set(CHINA_SYSTEMS)


@pytest.mark.parametrize(
    "system", ["urn:oid:2.16.156.10011.2.3.3.11.2", "urn:oid:2.16.156.10011.2.3.3.11.5", "2.16.156.10011.2.3.3"]
)
def test_the_death_cause_and_pathology_tables_are_not_read_as_icd10(system: str) -> None:
    # Their codes are ICD-O morphology (M8140/3): as ICD-10 they would be chapter M.
    with pytest.raises(LineError) as caught:
        parse(cond(code={"coding": [{"system": system, "code": "M81403"}]}))
    assert caught.value.code == "unknown_code_system"


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/p1",
        "Patient/p1/_history/3",
        "https://his.hospital-a.example/fhir/Patient/p1",
        "http://10.0.0.5:8080/fhir/R4/Patient/p1/_history/1",
    ],
)
def test_absolute_and_versioned_references(reference: str) -> None:
    assert parse(cond(subject={"reference": reference})).patient_ref == "p1"


@pytest.mark.parametrize("reference", ["Observation/p1", "Patient/", "Patient/p 1", "Patient/p1/_history/", "p1"])
def test_other_references_are_still_refused(reference: str) -> None:
    with pytest.raises(LineError) as caught:
        parse(cond(subject={"reference": reference}))
    assert caught.value.code == "missing_subject"


def test_three_character_and_icd10cm_only_codes_follow_the_published_lists() -> None:
    catalog = load()
    # Quan 2005 lists E11.0-E11.9 by fourth character: a bare E11 is not in the diabetes lists.
    assert not {"charlson.diab", "charlson.diabwc"} & catalog.categories_of("E11")
    # ICD-10-CM-only categories outside the WHO-based lists (E08, E09, C7B) count for nothing ...
    assert all(not catalog.categories_of(code) for code in ("E0865", "E0900", "C7B00"))
    # ... while E13 is a WHO category ("other specified diabetes") that Quan 2005 lists, in both editions.
    assert "charlson.diab" in catalog.categories_of("E139")
