"""Attacks on the reading of hospital feeds: records written so that they move an applicant's tier
(a refuted or suspected diagnosis counted, a second hospital's records dropped, a foreign person's
records linked by a mistyped resident ID, records left unlinked) and what each achieves now."""

from __future__ import annotations

from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from datadomain import catalog, linkage, services
from datadomain.catalog import load
from datadomain.ingest.runner import Ingester
from datadomain.models import PatientSource, QuarantinedLine
from datadomain.selectors import subject_features
from securecompute.keys import generate_keypair
from tests.datadomain.fhir import condition, patient, resident_id, write_ndjson

pytestmark = pytest.mark.django_db
BORN = date(1950, 3, 1)
AS_OF = date(2026, 6, 30)
STU3_VER = "http://hl7.org/fhir/condition-ver-status"
CHARLSON = ["charlson.metacanc", "charlson.aids", "charlson.chf", "age.acci_points"]


def ingest(tmp_path: Path, name: str, resources: list[dict[str, Any] | bytes]) -> None:
    Ingester().run([write_ndjson(tmp_path / name, resources)])


def features(rid: str) -> dict[str, int]:
    return subject_features(subject_key=services.subject_key_for(rid), feature_names=CHARLSON, as_of=AS_OF)


def test_a_refuted_or_suspected_diagnosis_in_any_encoding_gives_no_points(tmp_path: Path) -> None:
    rid = resident_id(BORN)
    refuted_stu3 = {**condition("c1", "p1", "C78.0"), "verificationStatus": {"coding": [{"system": STU3_VER,
                    "code": "refuted"}]}}  # fmt: skip
    refuted_text = {**condition("c2", "p1", "C79.5"), "verificationStatus": {"text": "Refuted"}}
    suspected_hiv = {**condition("c3", "p1", "B20"), "verificationStatus": "provisional"}  # STU3 string
    differential = {**condition("c4", "p1", "B24"), "verificationStatus": {"text": "待排"}}
    ingest(
        tmp_path, "a.ndjson", [patient("p1", BORN, rid=rid), refuted_stu3, refuted_text, suspected_hiv, differential]
    )
    assert features(rid) == {"charlson.metacanc": 0, "charlson.aids": 0, "charlson.chf": 0, "age.acci_points": 3}


def test_a_future_onset_period_does_not_fall_back_to_recorded_date(tmp_path: Path) -> None:
    rid = resident_id(BORN)
    later = {**condition("c1", "p1", "I50.9"), "onsetDateTime": None, "recordedDate": "2020-01-01"}
    later["onsetPeriod"] = {"start": "2026-06-30T20:00:00-05:00"}
    ingest(tmp_path, "a.ndjson", [patient("p1", BORN, rid=rid), later])
    # 20:00 on 30 June in UTC-5 is 1 July in Shanghai: after the as-of date, so it does not count yet.
    assert features(rid)["charlson.chf"] == 0


def test_onset_age_after_the_as_of_date_does_not_count(tmp_path: Path) -> None:
    rid = resident_id(BORN)
    at_80 = {**condition("c1", "p1", "I50.9"), "onsetDateTime": None, "onsetAge": {"value": 80, "code": "a"}}
    at_60 = {**condition("c2", "p1", "B20"), "onsetDateTime": None, "onsetAge": {"value": 60, "unit": "years"}}
    ingest(tmp_path, "a.ndjson", [patient("p1", BORN, rid=rid), at_80, at_60])
    values = features(rid)
    assert (values["charlson.chf"], values["charlson.aids"]) == (0, 1)  # 76 years old on the as-of date


def test_full_width_dagger_and_multi_coded_conditions_count(tmp_path: Path) -> None:
    rid = resident_id(BORN)
    wide = {**condition("c1", "p1", "\uff23\uff17\uff18\uff10")}  # full-width C780
    multi = {**condition("c2", "p1", "I10"), "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10",
             "code": "I10"}, {"system": "http://hl7.org/fhir/sid/icd-10", "code": "I50.9"}]}}  # fmt: skip
    ingest(tmp_path, "a.ndjson", [patient("p1", BORN, rid=rid), wide, multi, condition("c3", "p1", "E11.2†N08.3*")])
    assert QuarantinedLine.objects.count() == 0
    assert features(rid) == {"charlson.metacanc": 1, "charlson.aids": 0, "charlson.chf": 1, "age.acci_points": 3}


def test_one_resident_two_hospitals_every_record_counts(tmp_path: Path) -> None:
    rid = resident_id(BORN)
    ingest(tmp_path, "a.ndjson", [patient("A-778", BORN, rid=rid), condition("a1", "A-778", "I50.9")])
    # Hospital B: another Patient id for the same resident, an absolute reference, a metastatic cancer.
    b_patient = patient("B-42", BORN, rid=rid)
    b_cancer = {**condition("b1", "B-42", "C78.0"), "subject": {"reference": "https://his.b.example/fhir/Patient/B-42"}}
    ingest(tmp_path, "b.ndjson", [b_patient, b_cancer])
    assert QuarantinedLine.objects.count() == 0
    assert set(PatientSource.objects.values_list("resource_id", flat=True)) == {"A-778", "B-42"}
    values = features(rid)
    # ACCI: 3 age points + 6 metastatic (the second hospital's record is no longer lost)
    assert (values["charlson.metacanc"], values["charlson.chf"]) == (1, 1)


@cache
def _public_key() -> Any:
    return generate_keypair(2048)[0]


def _vectors(rid: str) -> dict[str, Any]:
    # The request path's one-query hold check agrees with its two parts, as staff see them.
    ids = list(PatientSource.objects.values_list("patient_id", flat=True).distinct())
    assert linkage.held(ids) == linkage.open_conflicts(ids) | linkage.unlinked_records(ids)
    public_key = _public_key()
    return services.encrypted_feature_vectors(
        subject_keys=[services.subject_key_for(rid)], feature_names=CHARLSON, as_of=AS_OF, public_key=public_key
    )


def test_a_mistyped_resident_id_at_another_hospital_holds_the_subject_until_staff_confirm(tmp_path: Path) -> None:
    rid = resident_id(BORN)
    ingest(tmp_path, "a.ndjson", [patient("A-1", BORN, rid=rid, name="王小明")])
    assert _vectors(rid)  # answered
    stranger = {**patient("B-9", BORN, rid=rid, name="李娜"), "gender": "female"}
    ingest(tmp_path, "b.ndjson", [stranger, condition("b1", "B-9", "C78.0")])
    source = PatientSource.objects.get(resource_id="B-9")
    assert linkage.differing_fields(source.name, source.sex, source.patient.name, source.patient.sex) == ["name", "sex"]
    assert _vectors(rid) == {}  # refused: never answered on possibly foreign records
    assert linkage.confirm("B-9", by="coder") is True
    assert _vectors(rid)
    PatientSource.objects.filter(pk="B-9").update(name="李娜娜")  # a later change opens the link again
    assert _vectors(rid) == {}


def test_records_that_arrived_before_their_patient_hold_the_subject_until_they_are_re_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = resident_id(BORN)
    ingest(tmp_path, "a.ndjson", [patient("A-1", BORN, rid=rid)])
    ingest(tmp_path, "early.ndjson", [condition("b1", "B-9", "C78.0")])  # hospital B's record, no Patient yet
    # Hospital B's Patient arrives; the run is stopped before its end, where held records are re-read.
    monkeypatch.setattr(Ingester, "release_held", lambda self: 0)
    ingest(tmp_path, "b.ndjson", [patient("B-9", BORN, rid=rid)])
    assert _vectors(rid) == {}  # the cancer sits in the quarantine: no answer on partial records
    monkeypatch.undo()
    assert Ingester().release_held() == 1
    assert QuarantinedLine.objects.get().resolved_at is not None
    assert _vectors(rid)
    assert features(rid)["charlson.metacanc"] == 1


def test_a_linked_patient_id_cannot_be_moved_to_another_resident(tmp_path: Path) -> None:
    rid, other = resident_id(BORN), resident_id(BORN, sequence=456)
    ingest(tmp_path, "a.ndjson", [patient("A-1", BORN, rid=rid), condition("a1", "A-1", "C78.0")])
    ingest(tmp_path, "b.ndjson", [patient("A-1", BORN, rid=other, version=2, updated="2025-02-01")])
    assert QuarantinedLine.objects.get().reason_code == "relinked_patient"
    assert features(rid)["charlson.metacanc"] == 1


def test_changing_a_reading_rule_changes_the_catalog_version(tmp_path: Path) -> None:
    source = catalog.HERE
    for name in ("catalog.yaml", "charlson.yaml", "elixhauser.yaml", "general.yaml", "zh_diagnosis_names.csv"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    before = load(tmp_path)
    text = (tmp_path / "catalog.yaml").read_text()
    (tmp_path / "catalog.yaml").write_text(text.replace(", provisional, differential]", ", differential]"))
    after = load(tmp_path)
    assert "provisional" not in after.not_counting_verification
    assert after.version != before.version  # stored vectors of the old version are recomputed


def test_one_coder_cannot_change_what_a_code_means_alone(tmp_path: Path) -> None:
    from datadomain import mapping
    from datadomain.errors import DomainError
    from datadomain.models import CodeMapping

    rid = resident_id(BORN)
    text = {**condition("c1", "p1", "I10"), "code": {"text": "心功能不全"}}
    ingest(tmp_path, "a.ndjson", [patient("p1", BORN, rid=rid), text])
    change = mapping.propose(source="text:", local_code="心功能不全", icd10="C78.0", by="mallory")
    with pytest.raises(DomainError):
        mapping.approve(change.pk, by="mallory")
    mapping.apply("text:", "心功能不全")
    assert CodeMapping.objects.get().status == "pending"
    assert features(rid)["charlson.metacanc"] == 0  # the applicant's tier did not move
