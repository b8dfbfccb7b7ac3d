"""benchmarks/store_fill.py grows a real ingested store with SQL copies: distinct ids, each copy's records
pointing at its own copy of their person, resident IDs and subject keys that no real person has, and a
store that the ingest then writes into as usual."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from benchmarks.store_fill import fill_to
from datadomain import synthetic
from datadomain.ingest.runner import Ingester
from datadomain.models import Condition, Encounter, Observation, Patient, PatientSource

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the fill is PostgreSQL SQL"),
]


def _url() -> str:
    settings: dict[str, Any] = connection.settings_dict
    user, host, port = settings["USER"], settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
    password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
    return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"


def _resources() -> int:
    return sum(model.objects.count() for model in (PatientSource, Condition, Encounter, Observation))


@pytest.fixture
def ingested(tmp_path: Path) -> int:
    synthetic.generate(patients=40, seed=7, out=tmp_path / "first")
    Ingester(batch_size=100).run([tmp_path / "first"])
    return _resources()


def test_fill_reaches_the_target_with_distinct_ids(ingested: int) -> None:
    target = ingested * 2 + ingested // 2
    filled = fill_to(_url(), target)

    assert filled.resources_before == ingested
    assert filled.resources_after == _resources() >= target
    # Whole copies, then parts of the population sized to what is still missing: never a whole copy too many.
    assert filled.copies >= 2
    assert filled.resources_after < target + ingested // 2
    assert Patient.objects.values("resident_id").distinct().count() == Patient.objects.count()
    assert Patient.objects.values("subject_key").distinct().count() == Patient.objects.count()
    assert not Patient.objects.filter(resource_id__startswith="f", resident_id__regex=r"^[0-9]{17}[0-9X]$").exists()


def test_copied_records_belong_to_the_copy_of_their_person(ingested: int) -> None:
    fill_to(_url(), ingested * 2)

    for copied in Condition.objects.filter(resource_id__startswith="f1-").select_related("patient")[:50]:
        original = Condition.objects.select_related("patient").get(resource_id=copied.resource_id.removeprefix("f1-"))
        assert copied.patient.resource_id == "f1-" + original.patient.resource_id
        assert (copied.code, copied.onset_date) == (original.code, original.onset_date)
    links = PatientSource.objects.filter(resource_id__startswith="f1-").select_related("patient")
    assert links.exists()
    assert all(link.patient.resource_id == link.resource_id for link in links)


def test_ingest_writes_into_a_filled_store(ingested: int, tmp_path: Path) -> None:
    fill_to(_url(), ingested * 3)
    synthetic.generate(patients=10, seed=8, out=tmp_path / "more")
    for path in (tmp_path / "more").glob("*.ndjson"):  # other ids, as bench_ingest's later populations
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(
            b"".join(line.replace(b'"id":"', b'"id":"s8-', 1).replace(b'"Patient/', b'"Patient/s8-') for line in lines)
        )
    before = _resources()

    summary = Ingester(batch_size=100).run([tmp_path / "more"])

    assert not summary.quarantined
    assert _resources() == before + summary.lines
    assert Patient.objects.filter(resource_id__startswith="s8-pat-").count() == 10


def test_a_store_already_large_enough_is_left_alone(ingested: int) -> None:
    filled = fill_to(_url(), ingested)

    assert (filled.resources_before, filled.resources_after) == (ingested, ingested)
    assert not Patient.objects.filter(resource_id__startswith="f").exists()
