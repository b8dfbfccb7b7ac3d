"""Attacks on the FHIR ingest: damaged and hostile input files, and rewritten resources.

The attacker (or an unlucky transfer) wanted the ingest to lose valid data, die with a traceback or run out
of memory, or to slip a changed resource past it under a version that was already ingested. The tests
run the real ``ingest_fhir`` command (or its ``Ingester``) and assert what was kept, what was quarantined
and why, the exit status, and a bounded peak of Python memory (tracemalloc, not time).
"""

from __future__ import annotations

import gzip
import random
import tracemalloc
import zlib
from collections.abc import Iterator
from datetime import date
from io import StringIO
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from datadomain.ingest.runner import Ingester
from datadomain.models import Condition, Encounter, Observation, Patient, QuarantinedLine
from tests.datadomain.fhir import condition, encounter, observation, patient, resident_id, write_ndjson

pytestmark = pytest.mark.django_db
BORN = date(1980, 1, 1)
BROKEN = 3  # ingest_fhir's exit status when a file broke off


def people(count: int) -> list[dict[str, Any]]:
    return [patient(f"p{n}", BORN, name=f"患者{n}", rid=resident_id(BORN, sequence=n)) for n in range(count)]


def ndjson(resources: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(resource) + b"\n" for resource in resources)


def ingest(*paths: Path, workers: int = 0) -> tuple[int, str]:
    """Run ``ingest_fhir``: (exit status, what it printed)."""
    out = StringIO()
    args = [*map(str, paths), "--no-progress", "--workers", str(workers)]
    try:
        call_command("ingest_fhir", *args, stdout=out, stderr=StringIO())
    except CommandError as error:
        return error.returncode, out.getvalue() + str(error)
    return 0, out.getvalue()


def stored_patients() -> set[str]:
    return set(Patient.objects.values_list("resource_id", flat=True))


def breaks() -> list[tuple[str, int, str]]:
    return list(
        QuarantinedLine.objects.filter(reason_code__in=["truncated_file", "corrupt_file", "not_gzip"])
        .order_by("line_number")
        .values_list("reason_code", "line_number", "raw_line")
    )


def statements(captured: CaptureQueriesContext) -> int:
    """Statements a block ran, a multi-row INSERT that SQLite splits into several (999 parameters a
    statement) counted once, as in tests/underwriting/conftest.py; a loop of single-row inserts still counts
    once per row."""
    count, previous = 0, ""
    for query in captured.captured_queries:
        sql = query["sql"]
        head = sql.split(" VALUES", 1)[0] if sql.startswith("INSERT") else ""
        count += not (connection.vendor == "sqlite" and head and head == previous)
        previous = head if "), (" in sql else ""
    return count


def complete_lines(data: bytes) -> list[bytes]:
    """The complete lines of the NDJSON that ``data``, a gzip file, still yields."""
    text = zlib.decompressobj(wbits=31).decompress(data)
    return text.split(b"\n")[:-1]


# --- item 11: damaged files ----------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2])
def test_a_truncated_gzip_keeps_every_line_before_the_break_and_the_other_files(tmp_path: Path, workers: int) -> None:
    whole = gzip.compress(ndjson(people(400)))
    cut = whole[: len(whole) * 3 // 5]
    (tmp_path / "Patient.ndjson.gz").write_bytes(cut)
    kept = [orjson.loads(line)["id"] for line in complete_lines(cut)]
    partial = zlib.decompressobj(wbits=31).decompress(cut).rsplit(b"\n", 1)[1]
    assert 50 < len(kept) < 400
    assert partial
    write_ndjson(tmp_path / "Condition.ndjson", [condition("c1", "p0", "I50.0"), condition("c2", "p1", "J44.9")])

    status, out = ingest(tmp_path, workers=workers)

    assert status == BROKEN
    assert stored_patients() == set(kept)
    assert Condition.objects.count() == 2  # the file beside the broken one
    [(code, line, raw)] = breaks()
    assert (code, line) == ("truncated_file", len(kept) + 1)
    assert raw == partial.decode("utf-8", errors="replace")  # the cut-off line, for the operator
    assert "files cut short or unreadable: 1" in out
    assert f"truncated_file at line {len(kept) + 1}" in out
    assert "Traceback" not in out
    reason = QuarantinedLine.objects.get(reason_code="truncated_file").reason
    assert "患者" not in reason
    assert "3702" not in reason


def test_a_cut_file_stays_reported_until_a_whole_copy_replaces_it(tmp_path: Path) -> None:
    whole = gzip.compress(ndjson(people(300)))
    path = tmp_path / "Patient.ndjson.gz"
    path.write_bytes(whole[: len(whole) // 2])
    assert ingest(path)[0] == BROKEN
    kept = stored_patients()
    status, out = ingest(path)  # the same cut file: nothing is read again, and it is still reported
    assert status == BROKEN
    assert "lines read: 0," in out
    path.write_bytes(whole)
    assert ingest(path)[0] == 0
    assert len(stored_patients()) == 300 > len(kept)
    assert QuarantinedLine.objects.get(reason_code="truncated_file").resolved_at is not None


def test_a_dot_gz_file_that_is_not_gzip_is_quarantined_as_a_whole(tmp_path: Path) -> None:
    (tmp_path / "Patient.ndjson.gz").write_bytes(ndjson(people(3)))
    write_ndjson(tmp_path / "more-Patient.ndjson", [patient("q1", BORN, rid=resident_id(BORN, sequence=900))])
    status, out = ingest(tmp_path)
    assert status == BROKEN
    assert stored_patients() == {"q1"}
    [(code, line, raw)] = breaks()
    assert (code, line, raw) == ("not_gzip", 0, "")
    assert "not_gzip at line 0" in out


def test_an_unreadable_file_is_reported_and_read_once_it_can_be(tmp_path: Path, monkeypatch: Any) -> None:
    from datadomain.ingest import runner

    path = write_ndjson(tmp_path / "Patient.ndjson", people(2))

    def refused(_path: Path) -> str:
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patched:
        patched.setattr(runner, "fingerprint", refused)
        status, out = ingest(path)
    assert status == BROKEN
    assert "unreadable_file at line 0" in out
    assert not stored_patients()
    assert ingest(path)[0] == 0  # readable again: read, and the old break no longer stands
    assert stored_patients() == {"p0", "p1"}
    assert ingest(path)[0] == 0  # finished: nothing to report


def damaged(data: bytes) -> tuple[bytes, int]:
    """``data`` (gzip) with a few bytes of its deflate stream overwritten where zlib notices, and how
    many of its lines zlib still returns before noticing."""
    rng = random.Random(11)
    for _ in range(200):
        at = rng.randrange(len(data) // 3, len(data) * 2 // 3)
        bad = data[:at] + bytes(b ^ 0x5A for b in data[at : at + 8]) + data[at + 8 :]
        decompressor, out = zlib.decompressobj(wbits=31), bytearray()
        try:
            for start in range(0, len(bad), 64):
                out += decompressor.decompress(bad[start : start + 64])
        except zlib.error:
            return bad, out.count(b"\n")
    raise AssertionError("no damage zlib notices")


def test_damaged_gzip_data_is_quarantined_and_the_run_carries_on(tmp_path: Path) -> None:
    resources = people(2000)
    bad, _ = damaged(gzip.compress(ndjson(resources)))
    (tmp_path / "a-Patient.ndjson.gz").write_bytes(bad)
    write_ndjson(tmp_path / "b-Patient.ndjson", [patient("q1", BORN, rid=resident_id(BORN, sequence=999))])
    status, out = ingest(tmp_path)
    assert status == BROKEN
    assert "q1" in stored_patients()
    assert stored_patients() <= {resource["id"] for resource in resources} | {"q1"}
    [(code, _line, _raw)] = breaks()
    assert code == "corrupt_file"
    assert "Traceback" not in out


def test_binary_garbage_is_quarantined_line_by_line_never_fatal(tmp_path: Path) -> None:
    """NUL bytes cannot be stored in PostgreSQL text: the quarantine must not die on them."""
    garbage = random.Random(3).randbytes(200_000)
    path = write_ndjson(tmp_path / "Patient.ndjson", [garbage, patient("p1", BORN)])
    status, _ = ingest(path)
    assert status == 0
    assert stored_patients() == {"p1"}
    raws = list(QuarantinedLine.objects.values_list("raw_line", flat=True))
    assert raws
    assert all("\x00" not in raw for raw in raws)


# --- item 11: lines longer than the bound --------------------------------------------------------------


def huge_line_gzip(path: Path, size: int) -> Path:
    """A gzip of a patient, one line of ``size`` bytes of 'a', and another patient: a few MB for 3 GiB.
    Concatenated gzip members read as one stream, so the line is built from one compressed block."""
    block_size = 64 << 20
    block = gzip.compress(b"a" * block_size)
    with path.open("wb") as out:
        out.write(gzip.compress(orjson.dumps(patient("p1", BORN)) + b"\n"))
        for _ in range(size // block_size):
            out.write(block)
        out.write(gzip.compress(b"a" * (size % block_size) + b"\n"))
        out.write(gzip.compress(orjson.dumps(patient("p2", date(1990, 5, 5))) + b"\n"))
    return path


def traced_peak(run: Any) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


HUGE = 3 << 30  # the 3 GB line


def test_a_3_gib_line_in_a_gzip_is_quarantined_with_bounded_memory(tmp_path: Path) -> None:
    path = huge_line_gzip(tmp_path / "Patient.ndjson.gz", HUGE)
    assert path.stat().st_size < 8 << 20
    summary: dict[str, Any] = {}
    peak = traced_peak(lambda: summary.update(done=Ingester().run([path])))
    assert peak < 64 << 20, f"peak {peak / 1e6:.0f} MB"  # INGEST_MAX_LINE_BYTES is 4 MiB
    assert stored_patients() == {"p1", "p2"}
    line = QuarantinedLine.objects.get()
    assert (line.line_number, line.reason_code, line.raw_line) == (2, "line_too_long", "a" * 1000)
    assert summary["done"].broken == []


def test_an_over_long_line_in_a_plain_file_is_read_past_in_chunks(tmp_path: Path, settings: Any) -> None:
    settings.INGEST_MAX_LINE_BYTES = 64 * 1024
    path = tmp_path / "Patient.ndjson"
    with path.open("wb") as out:
        out.write(orjson.dumps(patient("p1", BORN)) + b"\n")
        out.write(b'{"resourceType": "Patient", "id": "' + b"x" * (40 << 20) + b'"}\n')
        out.write(orjson.dumps(patient("p2", date(1990, 5, 5))) + b"\n")
    peak = traced_peak(lambda: Ingester().run([path]))
    assert peak < 16 << 20, f"peak {peak / 1e6:.0f} MB"
    assert stored_patients() == {"p1", "p2"}
    assert QuarantinedLine.objects.get().reason_code == "line_too_long"


# --- item 12: the same id and version with other content ---------------------------------------------------


def variants() -> Iterator[tuple[dict[str, Any], dict[str, Any], type[Any], str, object]]:
    """(stored resource, rewrite under the same id and version, model, field, stored value)."""
    yield patient("p1", BORN), patient("p1", BORN, name="冒名"), Patient, "name", "王小明"
    yield condition("c1", "p1", "I50.0"), condition("c1", "p1", "C34.9"), Condition, "code", "I500"
    visit = encounter("e1", "p1", "2025-01-02")
    yield visit, {**visit, "class": {"code": "AMB"}}, Encounter, "class_code", "IMP"
    bmi = observation("o1", "p1", "39156-5", 24.0, "2025-01-03")
    yield bmi, {**bmi, "valueQuantity": {"value": 41.0, "unit": "kg/m2"}}, Observation, "value", 24.0


@pytest.mark.parametrize(("stored", "rewrite", "model", "field", "value"), list(variants()))
def test_a_rewritten_resource_under_an_ingested_version_is_quarantined_as_a_conflict(
    tmp_path: Path, stored: dict[str, Any], rewrite: dict[str, Any], model: type[Any], field: str, value: object
) -> None:
    base = [patient("p1", BORN)] if stored["resourceType"] != "Patient" else []
    assert ingest(write_ndjson(tmp_path / "first.ndjson", [*base, stored]))[0] == 0
    assert ingest(write_ndjson(tmp_path / "second.ndjson", [rewrite]))[0] == 0
    line = QuarantinedLine.objects.get()
    assert (line.line_number, line.reason_code) == (1, "version_conflict")
    assert "冒名" not in line.reason
    assert "C34" not in line.reason
    assert model.objects.values_list(field, flat=True).get(resource_id=stored["id"]) == value
    # The same content again, however it is spelled, is no conflict: it changes nothing.
    again = orjson.dumps(dict(reversed(list(stored.items()))), option=orjson.OPT_INDENT_2).replace(b"\n", b" ")
    assert ingest(write_ndjson(tmp_path / "third.ndjson", [again]))[0] == 0
    assert QuarantinedLine.objects.count() == 1


def test_a_conflict_inside_one_batch_keeps_the_first_copy(tmp_path: Path) -> None:
    path = write_ndjson(
        tmp_path / "one.ndjson",
        [
            patient("p1", BORN),
            condition("c1", "p1", "I50.0"),
            condition("c1", "p1", "C34.9"),
            condition("c1", "p1", "I50.0"),
        ],
    )
    assert ingest(path)[0] == 0
    assert Condition.objects.get().code == "I500"
    assert list(QuarantinedLine.objects.values_list("line_number", "reason_code")) == [(3, "version_conflict")]


def test_a_newer_version_still_replaces_the_stored_one(tmp_path: Path) -> None:
    ingest(write_ndjson(tmp_path / "v1.ndjson", [patient("p1", BORN), condition("c1", "p1", "I50.0")]))
    ingest(write_ndjson(tmp_path / "v2.ndjson", [condition("c1", "p1", "C34.9", version=2)]))
    assert Condition.objects.get().code == "C349"
    assert not QuarantinedLine.objects.exists()


def test_conflicts_are_found_without_a_query_per_line(tmp_path: Path) -> None:
    def queries_for(count: int) -> int:
        resources: list[dict[str, Any] | bytes] = [condition(f"k{count}-{n}", "p1", "I50.0") for n in range(count)]
        Ingester().run([write_ndjson(tmp_path / f"stored{count}.ndjson", resources)])
        rewrites: list[dict[str, Any] | bytes] = [condition(f"k{count}-{n}", "p1", "C34.9") for n in range(count)]
        with CaptureQueriesContext(connection) as queries:
            Ingester().run([write_ndjson(tmp_path / f"rewritten{count}.ndjson", rewrites)])
        assert QuarantinedLine.objects.filter(reason_code="version_conflict").count() >= count
        return statements(queries)

    Ingester().run([write_ndjson(tmp_path / "p.ndjson", [patient("p1", BORN)])])
    assert queries_for(5) == queries_for(400)
