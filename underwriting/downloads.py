"""Spreadsheet files the product writes: CSV streamed from the admin (the regulator's export, a subject's
access report) and the batch results (CSV and XLSX) of the insurer portal.

Their cells hold text that insurers typed (references above all), and the people who open these files
do so in Excel or WPS. A cell that starts like a formula would run as one there (``=HYPERLINK(...)``
sending the row to a server of the author's choosing, DDE launching a program), so every cell goes
through :func:`spreadsheet_text` (OWASP "CSV Injection"); CSV is written with defusedcsv on top, and
XLSX cells are typed as text so that openpyxl never stores one as a formula.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from defusedcsv import csv
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone

# What a spreadsheet may read as the start of a formula: =, +, -, @ (and | and %, which defusedcsv treats
# alike for DDE), also behind leading blanks or control characters (importers skip some of them), and any
# cell that starts with a tab, CR or LF.
FORMULA_SIGNS = ("=", "+", "-", "@", "|", "%")
LINE_STARTS = ("\t", "\r", "\n")
_LEADING_BLANKS = re.compile(r"^[\s\x00-\x1f\x7f-\x9f]+")
_NUMBER = re.compile(r"-?[0-9][0-9,.]*")  # "-12" or "-1.5" is a plain negative number, not a formula
# Characters XML 1.0 (and so XLSX) cannot hold; openpyxl refuses a cell with one.
_NOT_IN_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def spreadsheet_text(value: Any) -> Any:
    """``value`` with a leading apostrophe when a spreadsheet could read it as a formula: it starts with a
    tab, CR or LF, or with one of ``FORMULA_SIGNS`` after any blanks and control characters, also in
    full-width form (a full-width equals sign reads as ``=`` after NFKC, as some spreadsheet input methods
    treat it). Other values, plain negative numbers included, are returned unchanged."""
    if not isinstance(value, str) or not value:
        return value
    head = _LEADING_BLANKS.sub("", unicodedata.normalize("NFKC", value))
    formula = value.startswith(LINE_STARTS) or head.startswith(FORMULA_SIGNS)
    return "'" + value if formula and not _NUMBER.fullmatch(value) else value


class _SafeWriter:
    """defusedcsv's writer (which escapes =, +, -, @, | and %) with :func:`spreadsheet_text` applied first,
    for the starts defusedcsv lets through (tab, CR, LF, leading spaces, full-width signs)."""

    def __init__(self, file: Any) -> None:
        self._writer = csv.writer(file)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([spreadsheet_text(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(file: Any) -> _SafeWriter:
    """The writer for every CSV file the product writes."""
    return _SafeWriter(file)


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def csv_download(rows: Iterable[Sequence[Any]], *, name: str) -> StreamingHttpResponse:
    """Stream ``rows`` as ``<name>-<today>.csv`` (Asia/Shanghai date), one row at a time."""
    writer = csv_writer(_Echo())
    response = StreamingHttpResponse((writer.writerow(row) for row in rows), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{name}-{timezone.localdate():%Y%m%d}.csv"'
    return response


def xlsx_cell(value: Any) -> Any:
    """A value as an XLSX cell may hold it: neutralised like a CSV cell, without XML-illegal characters."""
    value = spreadsheet_text(value)
    return _NOT_IN_XML.sub("\ufffd", value) if isinstance(value, str) else value


def xlsx_bytes(rows: Iterable[Sequence[Any]]) -> bytes:
    """One sheet of ``rows`` as an XLSX file; every string cell is text, never a formula. The first row is
    the header: bold and frozen, and every column is as wide as its longest cell."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append([xlsx_cell(value) for value in row])
    widths: dict[int, int] = {}
    for cells in sheet.iter_rows():
        for cell in cells:
            if isinstance(cell.value, str):
                cell.data_type = "s"  # openpyxl would store a string starting with "=" as a formula
            column = int(cell.column)
            widths[column] = max(widths.get(column, 0), display_width(cell.value))
    _lay_out(sheet, widths)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


MIN_COLUMN_WIDTH, MAX_COLUMN_WIDTH = 8, 60


def display_width(value: Any) -> int:
    """How many character widths a cell's text takes: CJK and other wide characters count twice."""
    if value is None:
        return 0
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in str(value))


def _lay_out(sheet: Any, widths: dict[int, int]) -> None:
    """Columns as wide as their longest cell (within bounds), a bold header row that stays in view."""
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    for column, width in widths.items():
        sheet.column_dimensions[get_column_letter(column)].width = min(
            max(width + 2, MIN_COLUMN_WIDTH), MAX_COLUMN_WIDTH
        )
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"


def xlsx_download(rows: Iterable[Sequence[Any]], *, filename: str) -> HttpResponse:
    response = HttpResponse(
        xlsx_bytes(rows), content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
