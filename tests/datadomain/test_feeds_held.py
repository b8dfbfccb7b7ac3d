"""Records that arrive before their Patient: held, then counted once the Patient is known.

Hospital systems export per resource type, and a bureau receives the files in whatever order they come:
a Condition file before the Patient file (a later ingest), or, in one file, records before their
Patient in an earlier batch. The resources below are written as a HIS's FHIR R4 bulk export writes
them: full meta, absolute ``subject`` references with the server's base, categories, an encounter
reference, ``recordedDate`` and an ``onsetDateTime`` with an offset."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import phe
import pytest

from datadomain import services
from datadomain.freshness import records_stamps
from datadomain.ingest.runner import Ingester
from datadomain.models import Condition, EncryptedFeatureVector, Patient, QuarantinedLine
from datadomain.selectors import subject_features
from tests.datadomain.fhir import resident_id, write_ndjson

pytestmark = pytest.mark.django_db
BORN = date(1958, 4, 12)
AS_OF = date(2026, 6, 30)
BASE = "https://his.hospital-b.example.cn/fhir"
NAMES = ["charlson.metacanc", "charlson.chf", "age.acci_points"]


def his_patient(pid: str, rid: str, name: str = "张建国") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"versionId": "3", "lastUpdated": "2026-05-20T10:02:11.000+08:00", "source": "#his-b"},
        "identifier": [
            {
                "use": "official",
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NNCHN"}]},
                "system": "urn:oid:2.16.156.10011.1.1",
                "value": rid,
            },
            {"system": f"{BASE}/sid/mrn", "value": "B00731542"},
        ],
        "active": True,
        "name": [{"use": "official", "text": name, "family": name[0], "given": [name[1:]]}],
        "gender": "male",
        "birthDate": BORN.isoformat(),
    }


def his_condition(cid: str, pid: str, code: str, display: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "meta": {"versionId": "1", "lastUpdated": "2026-05-20T10:05:42.000+08:00", "source": "#his-b"},
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]
        },
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "encounter-diagnosis",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code, "display": display}]},
        "subject": {"reference": f"{BASE}/Patient/{pid}"},
        "encounter": {"reference": f"{BASE}/Encounter/enc-{cid}"},
        "onsetDateTime": "2024-11-03T09:30:00+08:00",
        "recordedDate": "2024-11-03T11:12:00+08:00",
    }


def ingest(path: Path, **options: Any) -> Ingester:
    ingester = Ingester(**options)
    ingester.run([path])
    return ingester


def features(rid: str) -> dict[str, int]:
    return subject_features(subject_key=services.subject_key_for(rid), feature_names=NAMES, as_of=AS_OF)


def test_a_condition_file_ingested_before_its_patient_file_counts_once_the_patient_arrives(tmp_path: Path) -> None:
    rid = resident_id(BORN, sequence=731)
    conditions = write_ndjson(
        tmp_path / "Condition.ndjson",
        [
            his_condition("cnd-1", "pat-7731", "C78.0", "肺继发恶性肿瘤"),
            his_condition("cnd-2", "pat-7731", "I50.9", "心力衰竭"),
        ],
    )
    first = ingest(conditions)
    assert first.summary.quarantined["dangling_subject"] == 2
    held = QuarantinedLine.objects.filter(reason_code="dangling_subject", resolved_at__isnull=True)
    assert set(held.values_list("subject_ref", flat=True)) == {"pat-7731"}
    assert "pat-7731" not in held.first().reason  # the reason never quotes the line

    second = ingest(write_ndjson(tmp_path / "Patient.ndjson", [his_patient("pat-7731", rid)]))
    assert second.summary.released == 2
    assert "held records re-read now that their Patient is known: 2" in second.summary.lines_text()
    assert not held.exists()
    assert set(Condition.objects.values_list("code", flat=True)) == {"C780", "I509"}
    assert features(rid) == {"charlson.metacanc": 1, "charlson.chf": 1, "age.acci_points": 2}
    # Nothing is re-read twice: a later run finds no held record left.
    assert ingest(write_ndjson(tmp_path / "other.ndjson", [])).summary.released == 0


def test_records_before_their_patient_in_the_same_file_count_at_the_end_of_the_run(tmp_path: Path) -> None:
    rid = resident_id(BORN, sequence=732)
    path = write_ndjson(
        tmp_path / "export.ndjson",
        [
            his_condition("cnd-1", "pat-1", "C78.0", "肺继发恶性肿瘤"),
            his_condition("cnd-2", "pat-1", "I50.9", "心力衰竭"),
            his_patient("pat-1", rid),  # in a later batch than its records
        ],
    )
    ingester = ingest(path, batch_size=1)
    assert ingester.summary.released == 2
    assert QuarantinedLine.objects.filter(resolved_at__isnull=True).count() == 0
    assert features(rid)["charlson.metacanc"] == 1


def test_a_record_whose_patient_never_arrives_stays_held(tmp_path: Path) -> None:
    ingest(write_ndjson(tmp_path / "Condition.ndjson", [his_condition("cnd-9", "pat-none", "C78.0", "x")]))
    ingester = ingest(write_ndjson(tmp_path / "Patient.ndjson", [his_patient("pat-2", resident_id(BORN))]))
    assert ingester.summary.released == 0
    assert QuarantinedLine.objects.get().resolved_at is None


def test_a_second_hospitals_early_records_make_the_stored_vector_stale_and_it_is_recomputed(
    tmp_path: Path, keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]
) -> None:
    public_key, private_key = keypair
    rid = resident_id(BORN, sequence=733)
    key = services.subject_key_for(rid)
    ingest(write_ndjson(tmp_path / "a-Patient.ndjson", [his_patient("A-100", rid)]))

    def vector() -> list[int]:
        found = services.encrypted_feature_vectors(
            subject_keys=[key], feature_names=NAMES, as_of=AS_OF, public_key=public_key
        )
        return [private_key.decrypt(number) for number in found[key]]

    def fresh() -> bool:
        pk = Patient.objects.get().pk
        return EncryptedFeatureVector.objects.get(patient_id=pk).records_stamp == records_stamps([pk])[pk]

    assert vector() == [0, 0, 2]
    # Hospital B: its Condition file first, then its Patient file (another Patient id, same resident).
    ingest(write_ndjson(tmp_path / "b-Condition.ndjson", [his_condition("B-c1", "B-200", "C78.0", "肺继发恶性肿瘤")]))
    assert fresh()  # nothing of the subject changed yet: the record is held
    ingest(write_ndjson(tmp_path / "b-Patient.ndjson", [his_patient("B-200", rid)]))
    assert not fresh()  # stale: the held record now counts
    assert vector() == [1, 0, 2]  # recomputed
    assert fresh()


def test_re_processing_a_quarantined_patient_line_releases_its_held_records(
    tmp_path: Path, load: Callable[..., None]
) -> None:
    rid = resident_id(BORN, sequence=734)
    broken = {**his_patient("pat-5", rid), "birthDate": "1958-04-13"}  # disagrees with the resident ID
    ingest(write_ndjson(tmp_path / "Patient.ndjson", [broken]))
    ingest(write_ndjson(tmp_path / "Condition.ndjson", [his_condition("cnd-5", "pat-5", "C78.0", "x")]))
    patient_line = QuarantinedLine.objects.get(reason_code="birth_date_mismatch")
    patient_line.raw_line = patient_line.raw_line.replace("1958-04-13", "1958-04-12")  # a coder's correction
    patient_line.save(update_fields=["raw_line"])
    assert services.quarantine_reprocess(quarantined_id=patient_line.pk) is True
    assert QuarantinedLine.objects.filter(resolved_at__isnull=True).count() == 0
    assert features(rid)["charlson.metacanc"] == 1
