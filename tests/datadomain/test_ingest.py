from __future__ import annotations

import gzip
from datetime import date
from io import StringIO
from pathlib import Path

import orjson
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from datadomain import services
from datadomain.freshness import records_stamps
from datadomain.ingest.runner import Ingester
from datadomain.models import Condition, Encounter, IngestCheckpoint, Observation, Patient, QuarantinedLine
from tests.datadomain.fhir import condition, encounter, observation, patient, resident_id, write_ndjson

pytestmark = pytest.mark.django_db
BORN = date(1980, 1, 1)


def ingest(*paths: Path, **options: object) -> str:
    out = StringIO()
    call_command("ingest_fhir", *map(str, paths), "--no-progress", "--workers", "0", stdout=out, **options)
    return out.getvalue()


def test_ingests_every_type_and_keeps_raw_ids_only_in_the_identity_table(tmp_path: Path) -> None:
    rid = resident_id(BORN)
    path = write_ndjson(
        tmp_path / "all.ndjson",
        [
            patient("p1", BORN, rid=rid.lower().replace("x", "x")),
            condition("c1", "p1", "E11.200x001"),
            encounter("e1", "p1", "2026-01-02T08:00:00+08:00"),
            observation("o1", "p1", "4548-4", 53, "2026-01-03", unit="mmol/mol"),
            observation("o2", "p1", "85354-9", 150, "2026-01-03"),
        ],
    )
    summary = ingest(path)
    stored = Patient.objects.get()
    assert stored.resident_id == rid
    assert stored.subject_key == services.subject_key_for(rid)
    assert stored.resident_id_masked == services.mask_resident_id(rid)
    assert Condition.objects.get().code == "E11200X001"
    assert Encounter.objects.get().class_code == "IMP"
    hba1c, bp = Observation.objects.order_by("resource_id")
    assert hba1c.value == pytest.approx(7.0, abs=0.01)
    assert hba1c.unit == "%"
    assert (bp.value, bp.value_secondary) == (150, 80)
    assert "Condition" in summary
    assert "resources/s" in summary
    assert rid not in summary


def test_reingesting_the_same_file_adds_nothing(tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "a.ndjson", [patient("p1", BORN), condition("c1", "p1", "I50.0")])
    ingest(path)
    stamp = records_stamps([Patient.objects.get().pk])
    ingest(path)  # checkpoint: nothing read
    out = ingest(path, restart=True)  # every line read again: all unchanged
    assert Condition.objects.count() == 1
    assert Patient.objects.count() == 1
    assert "Condition             0          0          1" in out
    assert records_stamps([Patient.objects.get().pk]) == stamp


def test_newer_version_replaces_older_and_older_never_wins(tmp_path: Path) -> None:
    ingest(write_ndjson(tmp_path / "v2.ndjson", [patient("p1", BORN), condition("c1", "p1", "I50.0", version=2)]))
    ingest(write_ndjson(tmp_path / "v1.ndjson", [condition("c1", "p1", "J44.9", version=1)]))
    assert Condition.objects.get().code == "I500"
    ingest(write_ndjson(tmp_path / "v3.ndjson", [condition("c1", "p1", "C34.9", version=3)]))
    assert Condition.objects.get().code == "C349"


def test_within_one_batch_the_newer_duplicate_wins(tmp_path: Path) -> None:
    path = write_ndjson(
        tmp_path / "dup.ndjson",
        [patient("p1", BORN), condition("c1", "p1", "C34.9", version=3), condition("c1", "p1", "I50.0", version=2)],
    )
    ingest(path)
    assert Condition.objects.get().code == "C349"


BAD_LINES: list[tuple[bytes | dict[str, object], str]] = [
    (b'{"resourceType": "Patient", ', "invalid_json"),
    ({"resourceType": "MedicationRequest", "id": "m1"}, "unknown_resource_type"),
    (condition("c2", "nobody", "I50.0"), "dangling_subject"),
    ({**condition("c3", "p1", "I50.0"), "subject": {}}, "missing_subject"),
    (condition("c4", "p1", "44054006", system="http://snomed.info/sct"), "unknown_code_system"),
    (condition("c5", "p1", "I50.0", onset="2026-02-30"), "invalid_date"),
    (condition("c6", "p1", "I50.0", onset="2999-01-01"), "impossible_date"),
    (patient("p2", BORN, rid="370214198001011230"), "invalid_resident_id"),
    ({**patient("p3", BORN, rid=resident_id(date(1981, 1, 1))), "birthDate": "1980-01-01"}, "birth_date_mismatch"),
    ({**condition("c7", "p1", "I50.0"), "id": "bad id!"}, "missing_id"),
]


def test_bad_lines_are_quarantined_with_a_reason_and_the_rest_is_ingested(tmp_path: Path) -> None:
    resources = [patient("p1", BORN), *(line for line, _ in BAD_LINES), condition("c9", "p1", "I50.0")]
    path = write_ndjson(tmp_path / "mixed.ndjson", resources)
    out = ingest(path)
    quarantined = {q.line_number: q for q in QuarantinedLine.objects.all()}
    assert {number: q.reason_code for number, q in quarantined.items()} == {
        number: code for number, (_, code) in enumerate(BAD_LINES, start=2)
    }
    assert Condition.objects.filter(resource_id="c9").exists()
    rid = resident_id(BORN)
    assert all(rid not in q.reason and "3702141980" not in q.reason for q in quarantined.values())
    assert rid not in out
    ingest(path, restart=True)  # quarantine is idempotent too
    assert QuarantinedLine.objects.count() == len(BAD_LINES)


def test_a_fixed_quarantined_line_can_be_reprocessed(tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "late.ndjson", [condition("c1", "p1", "I50.0")])
    ingest(path)
    line = QuarantinedLine.objects.get()
    assert line.reason_code == "dangling_subject"
    assert services.quarantine_reprocess(quarantined_id=line.pk) is False
    ingest(write_ndjson(tmp_path / "p.ndjson", [patient("p1", BORN)]))
    assert services.quarantine_reprocess(quarantined_id=line.pk) is True
    line.refresh_from_db()
    assert line.resolved_at is not None
    assert Condition.objects.filter(resource_id="c1").exists()


def test_a_broken_line_fixed_in_the_admin_is_ingested(tmp_path: Path) -> None:
    ingest(write_ndjson(tmp_path / "p.ndjson", [patient("p1", BORN), b'{"resourceType": "Condition"']))
    line = QuarantinedLine.objects.get()
    QuarantinedLine.objects.filter(pk=line.pk).update(raw_line=orjson.dumps(condition("c1", "p1", "J44.9")).decode())
    assert services.quarantine_reprocess(quarantined_id=line.pk) is True
    assert Condition.objects.get().code == "J449"


def test_resumes_after_a_crash_from_the_last_committed_batch(tmp_path: Path) -> None:
    resources = [patient("p1", BORN)] + [condition(f"c{i}", "p1", "I50.0") for i in range(9)]
    path = write_ndjson(tmp_path / "big.ndjson", resources)
    crashing = Ingester(batch_size=4)
    original = crashing.commit
    calls = {"n": 0}

    def commit_then_crash(*args: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        return original(*args)  # type: ignore[arg-type]

    crashing.commit = commit_then_crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        crashing.run([path])
    assert IngestCheckpoint.objects.get().lines_done == 4
    assert Condition.objects.count() == 3
    summary = Ingester(batch_size=4).run([path])
    assert summary.skipped_lines == 4
    assert Condition.objects.count() == 9
    assert IngestCheckpoint.objects.get().completed


def test_reads_gzip_and_directories_patients_first(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    write_ndjson(folder / "Condition.ndjson", [condition("c1", "p1", "I21.0")])
    with gzip.open(folder / "Patient.ndjson.gz", "wb") as handle:
        handle.write(orjson.dumps(patient("p1", BORN)) + b"\n")
    (folder / "notes.txt").write_text("ignored")
    ingest(folder)
    assert Condition.objects.get().patient.resource_id == "p1"


def test_missing_path_is_a_fatal_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as error:
        ingest(tmp_path / "missing.ndjson")
    assert error.value.returncode == 2


def test_refuted_and_entered_in_error_conditions_never_count(tmp_path: Path) -> None:
    rid = resident_id(BORN)
    ingest(
        write_ndjson(
            tmp_path / "r.ndjson",
            [
                patient("p1", BORN, rid=rid),
                condition("c1", "p1", "I50.0", status="refuted"),
                condition("c2", "p1", "J44.9", status="entered-in-error"),
                condition("c3", "p1", "I21.0", status="confirmed"),
            ],
        )
    )
    features = services.subject_key_for(rid)
    from datadomain.selectors import subject_features

    values = subject_features(
        subject_key=features, feature_names=["charlson.chf", "charlson.copd", "charlson.ami"], as_of=date(2026, 1, 1)
    )
    assert values == {"charlson.chf": 0, "charlson.copd": 0, "charlson.ami": 1}


def test_synthetic_data_is_deterministic_and_ingests_with_quarantine(tmp_path: Path) -> None:
    out = StringIO()
    call_command("generate_synthetic", patients=40, seed=7, out=tmp_path / "a", bad_lines=0.05, stdout=out)
    call_command("generate_synthetic", patients=40, seed=7, out=tmp_path / "b", bad_lines=0.05, stdout=out)
    for name in ("Patient", "Condition", "Encounter", "Observation"):
        assert (tmp_path / "a" / f"{name}.ndjson").read_bytes() == (tmp_path / "b" / f"{name}.ndjson").read_bytes()
    summary = Ingester().run([tmp_path / "a"])
    total = sum(summary.inserted.values()) + sum(summary.quarantined.values())
    assert total == summary.lines
    assert sum(summary.quarantined.values()) > 0
    assert Patient.objects.count() > 30


def test_parsing_in_worker_processes_gives_the_same_result(tmp_path: Path) -> None:
    resources = [patient("p1", BORN), patient("p2", date(1950, 5, 5), rid=resident_id(date(1950, 5, 5)))]
    resources += [condition(f"c{i}", f"p{1 + i % 2}", "E11.2") for i in range(7)] + [b"not json"]
    path = write_ndjson(tmp_path / "t.ndjson", resources)
    summary = Ingester(batch_size=3, workers=2).run([path])
    assert summary.inserted["Condition"] == 7
    assert summary.inserted["Patient"] == 2
    assert summary.quarantined == {"invalid_json": 1}
    assert Condition.objects.count() == 7


NASTY: list[object] = [
    "tab\there", "new\nline", "back\\slash", "carriage\rreturn", "", " ", "x" * 300, "王" * 100, 1e308, -1,
    0, None, [], {}, True, "9999-12-31", "1870-01-01", "2026-06-30T23:59:59-12:00", "Patient/p1", "a" * 64,
]  # fmt: skip


def test_hostile_values_are_stored_or_quarantined_never_fatal(tmp_path: Path) -> None:
    import random

    rng = random.Random(5)
    base = [
        patient("p1", BORN),
        condition("c1", "p1", "I50.0"),
        encounter("e1", "p1", "2026-01-01"),
        observation("o1", "p1", "39156-5", 31, "2026-01-01"),
    ]
    lines: list[dict[str, object] | bytes] = [base[0]]
    for index in range(300):
        resource = dict(rng.choice(base))
        resource["id"] = f"r{index}"
        for _ in range(rng.randrange(1, 3)):
            key = rng.choice([k for k in resource if k not in ("resourceType", "id")] + ["status", "unit"])
            resource[key] = rng.choice(NASTY)
        if rng.random() < 0.3 and resource["resourceType"] == "Observation":
            resource["valueQuantity"] = {"value": rng.choice([1e308, -0.0, 5]), "unit": rng.choice(NASTY)}
        if rng.random() < 0.3 and resource["resourceType"] == "Patient":
            resource["name"] = [{"text": rng.choice(["tab\tname", "back\\slash", "王\n小明"])}]
            resource["identifier"] = [
                {"system": "urn:oid:2.16.156.10011.1.1", "value": resident_id(BORN, sequence=index)}
            ]
        lines.append(resource)
    path = write_ndjson(tmp_path / "hostile.ndjson", lines)
    summary = Ingester(batch_size=50).run([path])
    stored = sum(summary.inserted.values()) + sum(summary.updated.values()) + sum(summary.unchanged.values())
    assert stored + sum(summary.quarantined.values()) == len(lines)
    # Tabs, newlines and backslashes survive the COPY text format unchanged.
    assert set(Patient.objects.values_list("name", flat=True)) <= {"王小明", "tab\tname", "back\\slash", "王\n小明"}
    assert Patient.objects.count() > 1
