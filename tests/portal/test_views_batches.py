"""Batches: preview with row-level errors, confirm, progress, results as CSV and XLSX, history."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from openpyxl import Workbook, load_workbook

from insurer_portal.batches import COLUMNS
from insurer_portal.models import Batch, BatchRow
from tests.portal.conftest import ALICE_ID, ALICE_NAME
from underwriting.models import RatingManual, RequestStatus, UnderwritingRequest

pytestmark = pytest.mark.django_db
SHA = "b" * 64


def rows() -> list[list[str]]:
    return [
        list(COLUMNS),
        ["B-1", ALICE_ID, ALICE_NAME, "charlson-acci", "C-1", "2026-01-01", "", SHA],
        ["B-2", "110105194912310021", "某人", "charlson-acci", "C-2", "2026-01-01", "", SHA],  # bad check char
        ["B-3", ALICE_ID, ALICE_NAME, "no-such-manual", "C-3", "yesterday", "", "xyz"],
    ]


def csv_file(table: list[list[str]]) -> SimpleUploadedFile:
    text = io.StringIO()
    csv.writer(text).writerows(table)
    return SimpleUploadedFile("applicants.csv", text.getvalue().encode("utf-8-sig"), content_type="text/csv")


def xlsx_file(table: list[list[str]]) -> SimpleUploadedFile:
    workbook = Workbook()
    sheet = workbook.active
    for row in table:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return SimpleUploadedFile("applicants.xlsx", buffer.getvalue())


def test_preview_lists_row_errors_and_submits_nothing(uw_client: Client, approved_manuals: list[RatingManual]) -> None:
    response = uw_client.post("/portal/batches/", {"file": csv_file(rows())})
    batch = Batch.objects.get()
    assert response["Location"] == f"/portal/batches/{batch.pk}/"
    assert (batch.total_rows, batch.valid_rows, batch.status) == (3, 1, Batch.Status.PREVIEW)
    page = uw_client.get(response["Location"], HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "resident_id is not a valid resident ID." in page
    assert "manual is not an approved manual you may use." in page
    assert "consent_signed_at is not a date." in page
    assert ALICE_ID not in page
    assert ALICE_NAME not in page
    assert not UnderwritingRequest.objects.exists()
    # Applicants are stored only sealed until the batch runs.
    assert ALICE_NAME.encode() not in bytes(batch.sealed_rows)
    assert not BatchRow.objects.filter(resident_id_masked=ALICE_ID).exists()


def test_xlsx_runs_through_the_same_service_and_results_download(
    uw_client: Client,
    alice: dict[str, str],
    approved_manuals: list[RatingManual],
    custodian_key: Any,
    run_on_commit: Callable[..., Any],
) -> None:
    uw_client.post("/portal/batches/", {"file": xlsx_file(rows())})
    batch = Batch.objects.get()
    assert batch.valid_rows == 1
    with run_on_commit():
        uw_client.post(f"/portal/batches/{batch.pk}/start/")
    batch.refresh_from_db()
    assert batch.status == Batch.Status.DONE
    assert batch.sealed_rows is None
    assert batch.submitted_rows == 1
    request = UnderwritingRequest.objects.get()
    assert request.status == RequestStatus.COMPLETED
    assert request.reference == "B-1"
    progress = uw_client.get(f"/portal/batches/{batch.pk}/progress/").content.decode()
    assert 'value="100"' in progress
    assert "hx-trigger" not in progress
    text = uw_client.get(f"/portal/batches/{batch.pk}/results.csv").content.decode("utf-8-sig")
    table = list(csv.DictReader(io.StringIO(text)))
    assert [row["reference"] for row in table] == ["B-1", "B-2", "B-3"]
    assert table[0]["tier"] == "D"
    assert table[0]["status"] == "completed"
    assert ALICE_ID not in text
    assert ALICE_NAME not in text
    content = uw_client.get(f"/portal/batches/{batch.pk}/results.xlsx").content
    sheet = load_workbook(io.BytesIO(content)).active
    assert sheet.cell(row=2, column=7).value == "D"
    history = uw_client.get("/portal/batches/").content.decode()
    assert "applicants.xlsx" in history


def test_a_running_batch_shows_a_polling_progress_bar(
    uw_client: Client, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    uw_client.post("/portal/batches/", {"file": csv_file(rows())})
    batch = Batch.objects.get()
    uw_client.post(f"/portal/batches/{batch.pk}/start/")  # after-commit task never runs here
    page = uw_client.get(f"/portal/batches/{batch.pk}/").content.decode()
    assert "<progress" in page
    assert 'hx-trigger="every 1s"' in page


def test_rejects_files_it_cannot_read(uw_client: Client, approved_manuals: list[RatingManual]) -> None:
    bad = SimpleUploadedFile("notes.txt", b"hello")
    page = uw_client.post("/portal/batches/", {"file": bad}, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Upload a .csv or .xlsx file." in page
    page = uw_client.post(
        "/portal/batches/", {"file": csv_file([["reference", "name"], ["x", "y"]])}, HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert "Missing columns" in page
    assert not Batch.objects.exists()


def test_cancel_erases_the_sealed_rows(uw_client: Client, approved_manuals: list[RatingManual]) -> None:
    uw_client.post("/portal/batches/", {"file": csv_file(rows())})
    batch = Batch.objects.get()
    uw_client.post(f"/portal/batches/{batch.pk}/cancel/")
    batch.refresh_from_db()
    assert batch.status == Batch.Status.CANCELLED
    assert batch.sealed_rows is None


def test_another_insurers_batch_is_not_found(
    uw_client: Client, other_client: Client, approved_manuals: list[RatingManual]
) -> None:
    uw_client.post("/portal/batches/", {"file": csv_file(rows())})
    batch = Batch.objects.get()
    for path in ("", "progress/", "results.csv"):
        assert other_client.get(f"/portal/batches/{batch.pk}/{path}").status_code == 404
    assert other_client.post(f"/portal/batches/{batch.pk}/start/").status_code == 404
    assert "applicants.csv" not in other_client.get("/portal/batches/").content.decode()


def test_sweeper_runs_a_batch_whose_task_was_lost(
    uw_client: Client,
    alice: dict[str, str],
    approved_manuals: list[RatingManual],
    custodian_key: Any,
    run_on_commit: Callable[..., Any],
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from insurer_portal.services import batches_sweep

    uw_client.post("/portal/batches/", {"file": csv_file(rows())})
    batch = Batch.objects.get()
    uw_client.post(f"/portal/batches/{batch.pk}/start/")  # its task is "lost": after-commit never runs
    assert batches_sweep() == 0  # too recent to call lost
    Batch.objects.filter(pk=batch.pk).update(started_at=timezone.now() - timedelta(minutes=10))
    with run_on_commit():
        assert batches_sweep() == 1
    batch.refresh_from_db()
    assert batch.status == Batch.Status.DONE
    assert UnderwritingRequest.objects.get().status == RequestStatus.COMPLETED


def test_a_batch_runs_in_chunks_and_a_rerun_counts_nothing_twice(
    uw_client: Client,
    alice: dict[str, str],
    approved_manuals: list[RatingManual],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from insurer_portal import batches, services

    monkeypatch.setattr(services, "BATCH_RUN_CHUNK", 2)
    chunks: list[int] = []
    submit_many = services.requests_submit_many

    def spy(**kwargs: Any) -> Any:
        chunks.append(len(kwargs["items"]))
        return submit_many(**kwargs)

    monkeypatch.setattr(services, "requests_submit_many", spy)
    table = [list(COLUMNS)] + [
        [f"B-{i}", ALICE_ID, ALICE_NAME, "charlson-acci", "C-1", "2026-01-01", "", SHA] for i in range(5)
    ]
    uw_client.post("/portal/batches/", {"file": csv_file(table)})
    batch = Batch.objects.get()
    uw_client.post(f"/portal/batches/{batch.pk}/start/")  # the task is run below instead
    sealed = bytes(batch.sealed_rows)
    services.batch_run(batch_id=batch.pk)
    assert chunks == [2, 2, 1]
    batch.refresh_from_db()
    assert (batch.status, batch.submitted_rows) == (Batch.Status.DONE, 5)
    statuses = [row.request.status for row in BatchRow.objects.filter(batch=batch).select_related("request")]
    assert statuses == ["extracting"] * 3 + ["rejected"] * 2  # the rate limit counts the rows before

    # A re-run (a lost task swept again) replays every row; one row changed since is a conflict.
    rows = batches.unseal(sealed, insurer_id=batch.insurer_id)
    rows[0].values["name"] = "李四"
    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.Status.RUNNING, sealed_rows=batches.seal(rows, insurer_id=batch.insurer_id)
    )
    services.batch_run(batch_id=batch.pk)
    batch.refresh_from_db()
    assert batch.submitted_rows == 5
    assert UnderwritingRequest.objects.count() == 5
    assert [row.errors for row in BatchRow.objects.filter(batch=batch)] == [["idempotency_conflict"]] + [[]] * 4


def test_progress_tells_rows_with_a_tier_from_rows_without_and_offers_those_alone(
    uw_client: Client,
    alice: dict[str, str],
    approved_manuals: list[RatingManual],
    custodian_key: Any,
    run_on_commit: Any,
) -> None:
    # Five rows for one applicant: the per-(insurer, subject) limit lets three through, two are rejected.
    table = [list(COLUMNS)] + [
        [f"P-{i}", ALICE_ID, ALICE_NAME, "charlson-acci", "C-1", "2026-01-01", "", SHA] for i in range(5)
    ]
    uw_client.post("/portal/batches/", {"file": csv_file(table)})
    batch = Batch.objects.get()
    with run_on_commit():
        uw_client.post(f"/portal/batches/{batch.pk}/start/")
    from insurer_portal.selectors import batch_progress

    progress = batch_progress(batch)
    assert (progress.total, progress.submitted) == (5, 5)
    assert progress.not_completed == 2  # never hidden inside "5 of 5 finished"
    page = uw_client.get(f"/portal/batches/{batch.pk}/progress/").content.decode()
    assert "without a tier" in page or "没有等级" in page
    only = uw_client.get(f"/portal/batches/{batch.pk}/results.csv?only=without-tier")
    lines = only.content.decode("utf-8-sig").splitlines()
    assert len(lines) == 1 + 2
    assert all(",rejected," in line for line in lines[1:])
    everything = uw_client.get(f"/portal/batches/{batch.pk}/results.csv").content.decode("utf-8-sig").splitlines()
    assert len(everything) == 1 + 5
