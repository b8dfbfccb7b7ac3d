"""Mapping tables per source: Chinese diagnosis text and hospitals' local codes, the starter table, CSV
import, four-eyes approval, the unmapped queue, the coverage report and recomputation of stored vectors."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import date
from typing import Any

import phe
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from datadomain import mapping, services
from datadomain.catalog import HERE, load, text_key
from datadomain.errors import DomainError
from datadomain.freshness import records_stamps
from datadomain.models import CodeMapping, EncryptedFeatureVector, Patient, QuarantinedLine, UnmappedCode
from datadomain.selectors import subject_features
from tests.datadomain.fhir import patient, resident_id
from tests.factories import UserFactory
from tests.staff import otp_login

pytestmark = pytest.mark.django_db
BORN = date(1960, 5, 5)
AS_OF = date(2026, 6, 30)
LOCAL = "urn:hospital-a:diagnosis"
NAMES = ["charlson.chf", "charlson.diab", "charlson.metacanc", "elix.hypunc"]


def text_condition(cid: str, text: str, source: str | None = "urn:his:hospital-b") -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": "Patient/p1"},
        "code": {"text": text},
        "verificationStatus": {"text": "确诊"},
    }
    if source:
        resource["meta"] = {"source": source}
    return resource


def local_condition(cid: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": LOCAL, "code": code, "display": "本院诊断"}]},
    }


def features(rid: str) -> dict[str, int]:
    return subject_features(subject_key=services.subject_key_for(rid), feature_names=NAMES, as_of=AS_OF)


def activate(source: str, local_code: str, icd10: str) -> None:
    change = mapping.propose(source=source, local_code=local_code, icd10=icd10, by="coder-1")
    mapping.approve(change.pk, by="coder-2")
    mapping.apply(source, text_key(local_code))


def test_the_starter_table_maps_each_name_to_exactly_its_reviewed_categories() -> None:
    catalog = load()
    comorbidities = {name for name, f in catalog.features.items() if f.kind == "condition"}
    with (HERE / "zh_diagnosis_names.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len({text_key(row["name"]) for row in rows}) == len(rows)  # no name twice
    for row in rows:
        found = set().union(*(catalog.categories_of(code) for code in catalog.text_map[text_key(row["name"])]))
        assert found & comorbidities == set(row["categories"].split()), row["name"]
    covered = {name for row in rows for name in row["categories"].split()}
    assert {name for name in comorbidities if name.startswith("charlson.")} <= covered


def test_chinese_diagnosis_text_counts_through_the_starter_table(load: Callable[..., None]) -> None:
    rid = resident_id(BORN)
    load(patient("p1", BORN, rid=rid), text_condition("c1", "２型糖尿病。"), text_condition("c2", " 高血压 ", None))
    assert QuarantinedLine.objects.count() == 0
    assert features(rid) == {"charlson.chf": 0, "charlson.diab": 1, "charlson.metacanc": 0, "elix.hypunc": 1}


def test_local_codes_need_a_mapping_table_and_then_count(load: Callable[..., None]) -> None:
    rid = resident_id(BORN)
    load(patient("p1", BORN, rid=rid), local_condition("c1", "XZ-0042"))
    assert QuarantinedLine.objects.get().reason_code == "unknown_code_system"  # no table for the system yet
    activate(LOCAL, "XZ-0042", "I50.9")
    load(local_condition("c2", "xz-0042"))
    assert features(rid)["charlson.chf"] == 1


def test_a_mapping_change_moves_the_stored_vector_to_stale_and_back(
    load: Callable[..., None], keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]
) -> None:
    public_key, private_key = keypair
    rid = resident_id(BORN)
    key = services.subject_key_for(rid)
    load(patient("p1", BORN, rid=rid), text_condition("c1", "心功能不全"))  # not in the starter table

    def vector() -> list[int]:
        found = services.encrypted_feature_vectors(
            subject_keys=[key], feature_names=NAMES, as_of=AS_OF, public_key=public_key
        )
        return [private_key.decrypt(number) for number in found[key]]

    def fresh() -> bool:
        pk = Patient.objects.get().pk
        return EncryptedFeatureVector.objects.get(patient_id=pk).records_stamp == records_stamps([pk])[pk]

    assert vector() == [0, 0, 0, 0]
    assert fresh()
    assert UnmappedCode.objects.get().mapped is False
    activate("text:urn:his:hospital-b", "心功能不全", "I50.9")
    assert not fresh()  # stale: the mapping changed what the records mean
    assert vector() == [1, 0, 0, 0]  # recomputed on use
    assert fresh()
    assert UnmappedCode.objects.get().mapped is True


def test_four_eyes_the_proposer_cannot_approve() -> None:
    change = mapping.propose(source=LOCAL, local_code="A1", icd10="C78.0", by="coder-1")
    with pytest.raises(DomainError) as caught:
        mapping.approve(change.pk, by="coder-1")
    assert caught.value.code == "forbidden"
    assert CodeMapping.objects.get().status == "pending"
    with pytest.raises(DomainError):
        mapping.propose(source=LOCAL, local_code="a1", icd10="I10", by="coder-3")  # another coder's is pending
    mapping.approve(change.pk, by="coder-2")
    second = mapping.propose(source=LOCAL, local_code="A1", icd10="I10", by="coder-3")
    mapping.approve(second.pk, by="coder-1")
    assert dict(CodeMapping.objects.values_list("icd10", "status")) == {"C780": "retired", "I10": "active"}


def test_csv_import_proposes_rows_and_reports_bad_ones_by_line() -> None:
    data = (
        "\ufeffsource,local_code,icd10,note\n"
        f"{LOCAL},A1,I50.9,本院编码表 2024\n"
        f"{LOCAL},A2,not a code!,\n"
        f",A3,I10,\n"
        "text:urn:his:b,心衰竭,I50.9†,\n"
    ).encode()
    result = mapping.import_csv(data, by="coder-1")
    assert result.proposed == 2
    assert [line for line, _ in result.errors] == [3, 4]
    assert CodeMapping.objects.filter(status="pending").count() == 2
    assert mapping.import_csv(b"a,b\n1,2\n", by="coder-1").errors[0][0] == 1
    assert mapping.import_csv(b"\xff\xfe", by="coder-1").errors


def test_queue_orders_unmapped_by_records_and_coverage_per_source(load: Callable[..., None]) -> None:
    load(
        patient("p1", BORN, rid=resident_id(BORN)),
        text_condition("c1", "罕见病甲"),
        text_condition("c2", "罕见病乙"),
        text_condition("c3", "罕见病乙"),
        text_condition("c4", "高血压"),
        text_condition("c5", "肺癌", "urn:his:hospital-c"),
    )
    queue = list(UnmappedCode.objects.values_list("local_code", "records", "mapped"))
    assert queue[:2] == [("罕见病乙", 2, False), ("罕见病甲", 1, False)]
    report = {row.source: (row.records, row.mapped, round(row.share, 2)) for row in mapping.coverage()}
    assert report == {"text:urn:his:hospital-b": (4, 1, 0.25), "text:urn:his:hospital-c": (1, 1, 1.0)}


def test_admin_import_and_second_coder_approval(
    client: Client, load: Callable[..., None], in_process_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    rid = resident_id(BORN)
    load(patient("p1", BORN, rid=rid), text_condition("c1", "心功能不全"))
    first = otp_login(client, UserFactory(is_staff=True, is_superuser=True))
    upload = SimpleUploadedFile(
        "map.csv", "source,local_code,icd10\ntext:urn:his:hospital-b,心功能不全,I50.9\n".encode()
    )
    response = first.post(reverse("admin:datadomain_codemapping_import"), {"file": upload}, follow=True)
    assert response.status_code == 200
    change = CodeMapping.objects.get()
    first.post(
        reverse("admin:datadomain_codemapping_changelist"), {"action": "approve", "_selected_action": [change.pk]}
    )
    assert CodeMapping.objects.get().status == "pending"  # the proposer's own approval is refused
    second = otp_login(Client(), UserFactory(is_staff=True, is_superuser=True))
    with django_capture_on_commit_callbacks(execute=True):
        second.post(
            reverse("admin:datadomain_codemapping_changelist"), {"action": "approve", "_selected_action": [change.pk]}
        )
    assert CodeMapping.objects.get().status == "active"
    assert features(rid)["charlson.chf"] == 1
    page = second.get(reverse("admin:datadomain_unmappedcode_changelist")).content.decode()
    assert "100.0%" in page
