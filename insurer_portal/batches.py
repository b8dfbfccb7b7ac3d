"""Batch files: reading CSV and XLSX uploads into rows, checking each row, and sealing the applicants.

The file's columns (first row, case-insensitive; ``insurer_portal/templates`` offers a sample):
``reference, resident_id, name, manual, consent_reference, consent_signed_at, consent_expires_at,
consent_sha256``. ``consent_expires_at`` may be empty. Dates are ISO 8601; a date or a time without a
zone is read in Asia/Shanghai. The signed forms stay with the insurer; ``consent_sha256`` is their hash.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from typing import Any
from xml.parsers import expat

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext as _

COLUMNS = (
    "reference",
    "resident_id",
    "name",
    "manual",
    "consent_reference",
    "consent_signed_at",
    "consent_expires_at",
    "consent_sha256",
)
REQUIRED = tuple(column for column in COLUMNS if column != "consent_expires_at")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BatchFileError(Exception):
    """The file as a whole cannot be read (not a row-level problem)."""


@dataclass
class ParsedRow:
    line: int
    values: dict[str, str]
    errors: list[str] = field(default_factory=list)


# --- reading: every bound is checked before or while reading, never after everything is in memory -----

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_COLUMNS = 64  # the format has 8; cells further right are never read
MAX_CELL_CHARS = 1000
MAX_CSV_LINE_CHARS = 20_000
BLANK_ROWS_ALLOWED = 10_000  # blank (e.g. formatted) rows between and below the data
# XLSX structure read at most, counted while streaming each part of the archive before openpyxl opens it:
# openpyxl holds a whole row (and a whole shared string) in memory, and builds objects for everything
# else it reads (styles, relationships, merged cells), so each of these is bounded separately.
XLSX_MAX_PARTS = 1000
XLSX_MAX_UNIT_ELEMENTS = 2000  # XML elements inside one row or one shared string
XLSX_MAX_OTHER_ELEMENTS = 100_000  # elements outside rows and shared strings, over the whole workbook
# Whatever expat and openpyxl build for one element: its tag with the attributes (a dict of them), its
# depth (a stack of open elements) and one run of text. Excel's own limits are far below these.
XLSX_MAX_TAG_BYTES = 16 * 1024
XLSX_MAX_DEPTH = 100
XLSX_MAX_TEXT_CHARS = 64 * 1024  # a cell holds at most 32,767 characters
_LONG_TAG = re.compile(b"<[^>]{%d}" % XLSX_MAX_TAG_BYTES)
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # a password-protected workbook or an old .xls


def read_rows(*, filename: str, content: bytes) -> list[dict[str, str]]:
    """The data rows of a CSV or XLSX file as dicts keyed by the header's column names.

    Memory stays bounded whatever the file says about itself: uploads over ``MAX_UPLOAD_BYTES``, an XLSX
    that unpacks to more than ``PORTAL_BATCH_MAX_UNCOMPRESSED_BYTES`` or declares more rows or columns
    than a batch may have are refused before any row is read; rows are counted while they stream in."""
    if len(content) > MAX_UPLOAD_BYTES:
        raise BatchFileError(_("The file is larger than 5 MB."))
    name = filename.lower()
    table: AbstractContextManager[Iterator[tuple[int, Sequence[Any]]]]
    if name.endswith(".xlsx"):
        table = _xlsx_table(content)
    elif name.endswith(".csv"):
        table = _csv_table(content)
    else:
        raise BatchFileError(_("Upload a .csv or .xlsx file."))
    with table as lines:
        return _records(lines)


def _row_cap() -> int:
    """Rows (CSV lines) a file may have, blank ones included: the header, the data rows allowed, and
    blank rows, which cost time even though nothing of them is kept."""
    return int(settings.PORTAL_BATCH_MAX_ROWS) + 1 + BLANK_ROWS_ALLOWED


def _records(lines: Iterator[tuple[int, Sequence[Any]]]) -> list[dict[str, str]]:
    """Rows are counted as they stream in; the first one over a limit ends the reading."""
    limit = int(settings.PORTAL_BATCH_MAX_ROWS)
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    for line, cells in lines:
        if line > _row_cap():
            raise _too_many_rows()
        if header is not None and all(cell is None or cell == "" for cell in cells):
            continue  # a blank row, or a gap openpyxl fills between rows
        texts = [_cell_text(cell, line) for cell in cells[:MAX_COLUMNS]]
        if header is None:
            header = [text.lower() for text in texts]
            missing = [column for column in REQUIRED if column not in header]
            if missing:
                raise BatchFileError(_("Missing columns: %(columns)s.") % {"columns": ", ".join(missing)})
            continue
        if not any(texts):
            continue
        if len(rows) == limit:
            raise BatchFileError(_("At most %(count)d rows per batch.") % {"count": limit})
        rows.append({name: texts[i] if i < len(texts) else "" for i, name in enumerate(header)})
    if header is None:
        raise BatchFileError(_("The file is empty."))
    if not rows:
        raise BatchFileError(_("The file has no data rows."))
    return rows


def _too_many_rows() -> BatchFileError:
    return BatchFileError(
        _("The file has more than %(count)d rows, blank rows included: delete the rows below your data.")
        % {"count": _row_cap()}
    )


def _cell_text(cell: Any, line: int) -> str:
    if cell is None:
        return ""
    if isinstance(cell, datetime | date):
        text = cell.isoformat()
    elif isinstance(cell, float) and cell.is_integer():
        text = str(int(cell))
    else:
        text = str(cell).strip()
    if len(text) > MAX_CELL_CHARS:
        raise BatchFileError(
            _("Line %(line)d has a value longer than %(count)d characters.") % {"line": line, "count": MAX_CELL_CHARS}
        )
    if "\x00" in text:
        raise BatchFileError(_("Line %(line)d contains a NUL character: the file is damaged.") % {"line": line})
    return text


# --- CSV -----------------------------------------------------------------------------------------------


@contextmanager
def _csv_table(content: bytes) -> Iterator[Iterator[tuple[int, list[str]]]]:
    try:
        content.decode("utf-8-sig")  # checked whole first, to name the line of a bad byte
    except UnicodeDecodeError as exc:
        line = content.count(b"\n", 0, exc.start) + 1
        raise BatchFileError(
            _("Line %(line)d is not UTF-8 text: save the file as CSV UTF-8.") % {"line": line}
        ) from None
    # Decoded as it is read: no second copy of the whole text. newline="" hands the csv module the line
    # endings it expects (\n, \r\n or \r) untranslated.
    with io.TextIOWrapper(io.BytesIO(content), encoding="utf-8-sig", newline="") as stream:
        yield _csv_lines(stream)


def _csv_lines(stream: io.TextIOWrapper) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(_bounded_lines(stream))
    try:
        for cells in reader:
            yield reader.line_num, cells
    except csv.Error:  # e.g. a quoted field longer than the csv module's field limit
        raise BatchFileError(_("Line %(line)d is not valid CSV.") % {"line": reader.line_num}) from None


def _bounded_lines(stream: io.TextIOWrapper) -> Iterator[str]:
    number = 0
    while line := stream.readline(MAX_CSV_LINE_CHARS + 1):
        number += 1
        if len(line) > MAX_CSV_LINE_CHARS:
            raise BatchFileError(
                _("Line %(line)d is longer than %(count)d characters.") % {"line": number, "count": MAX_CSV_LINE_CHARS}
            )
        yield line


# --- XLSX ----------------------------------------------------------------------------------------------


@contextmanager
def _xlsx_table(content: bytes) -> Iterator[Iterator[tuple[int, tuple[Any, ...]]]]:
    from openpyxl import load_workbook

    _xlsx_check(content)
    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True, keep_links=False)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001  # openpyxl raises many types for a damaged file
        raise _not_xlsx() from None
    try:
        yield _xlsx_lines(workbook)
    finally:
        workbook.close()


def _xlsx_lines(workbook: Any) -> Iterator[tuple[int, tuple[Any, ...]]]:
    try:
        sheet = workbook.worksheets[0]
        # Bounded in both directions: openpyxl pads every row to max_col and fills gaps between rows up to
        # max_row. One row past the cap tells that the sheet is too long.
        rows = sheet.iter_rows(max_row=_row_cap() + 1, max_col=MAX_COLUMNS, values_only=True)
        yield from enumerate(rows, start=1)
    except (BatchFileError, MemoryError):
        raise
    except Exception:  # noqa: BLE001  # a part that only breaks when its rows are read
        raise _not_xlsx() from None


def _not_xlsx() -> BatchFileError:
    return BatchFileError(_("This is not a readable XLSX file."))


def _xlsx_check(content: bytes) -> None:
    """Refuse, before openpyxl reads anything, a workbook whose declared or actual size is over the limits."""
    if content.startswith(OLE_MAGIC):
        raise BatchFileError(
            _("This is a password-protected or old-format Excel file: save it as .xlsx without a password.")
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001  # BadZipFile, OSError, ValueError, struct errors...
        raise _not_xlsx() from None
    with archive:
        members = archive.infolist()
        # file_size is what the archive declares; zipfile never returns more than that for a member (and
        # fails on its checksum), so a zip bomb is refused here without inflating anything.
        if len(members) > XLSX_MAX_PARTS or sum(member.file_size for member in members) > int(
            settings.PORTAL_BATCH_MAX_UNCOMPRESSED_BYTES
        ):
            raise BatchFileError(
                _("The workbook unpacks to more than %(size)d MB: keep only the applicants' sheet.")
                % {"size": int(settings.PORTAL_BATCH_MAX_UNCOMPRESSED_BYTES) // (1024 * 1024)}
            )
        scan = _XlsxScan(row_cap=_row_cap())
        for member in members:
            try:
                scan.part(archive, member)
            except (BatchFileError, MemoryError):
                raise
            except Exception:  # noqa: BLE001  # an encrypted or damaged member
                raise _not_xlsx() from None


class _XlsxScan:
    """Counts the XML elements of every part of a workbook as it streams through expat (constant memory),
    and stops at the first bound crossed. What openpyxl then reads is bounded by these counts."""

    def __init__(self, *, row_cap: int) -> None:
        self.row_cap = row_cap
        self.strings = 0
        self.other = 0
        self.rows = 0
        # A row and a shared string are what openpyxl holds whole in memory, one at a time.
        self.unit_depth = 0  # depth of the row or shared string being read; 0: outside
        self.unit_elements = 0
        self.cells = 0
        self.depth = 0
        self.text = 0  # characters of the current run of text

    def part(self, archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> None:
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.StartElementHandler = self.start
        parser.EndElementHandler = self.end
        parser.CharacterDataHandler = self.characters
        parser.StartDoctypeDeclHandler = self.doctype  # no part of a workbook has a DTD, or entities
        parser.EntityDeclHandler = self.doctype
        self.rows = self.depth = self.unit_depth = self.text = 0
        tail = b""
        with archive.open(member) as stream:
            try:
                while chunk := stream.read(1 << 16):
                    # Checked on the bytes, before expat builds the attributes of an endless tag.
                    if _LONG_TAG.search(tail + chunk):
                        raise _too_complex()
                    tail = chunk[-XLSX_MAX_TAG_BYTES:]
                    parser.Parse(chunk, False)
                parser.Parse(b"", True)
            except expat.ExpatError:
                return  # not XML (an image, a binary part): openpyxl fails cleanly if it needs it as XML

    def doctype(self, *args: Any) -> None:
        raise _not_xlsx()

    def characters(self, data: str) -> None:
        self.text += len(data)
        if self.text > XLSX_MAX_TEXT_CHARS:
            raise _too_complex()

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self.depth += 1
        self.text = 0
        if self.depth > XLSX_MAX_DEPTH:
            raise _too_complex()
        local = name.rpartition(" ")[2]
        if self.unit_depth:
            self.unit_elements += 1
            if local == "c":
                self.cells += 1
                if self.cells > MAX_COLUMNS:
                    raise _too_many_columns()
            if self.unit_elements > XLSX_MAX_UNIT_ELEMENTS:
                raise _too_complex()
        elif local == "row":
            self.rows += 1
            if self.rows > self.row_cap or _int(attributes.get("r")) > self.row_cap:
                raise _too_many_rows()
            self._enter_unit()
        elif local == "si":
            self.strings += 1
            if self.strings > (int(settings.PORTAL_BATCH_MAX_ROWS) + 1) * MAX_COLUMNS:
                raise _too_complex()
            self._enter_unit()
        elif local == "dimension":
            self.dimension(attributes.get("ref", ""))
        else:
            self.other += 1
            if self.other > XLSX_MAX_OTHER_ELEMENTS:
                raise _too_complex()

    def _enter_unit(self) -> None:
        self.unit_depth, self.unit_elements, self.cells = self.depth, 0, 0

    def end(self, name: str) -> None:
        self.text = 0
        if self.depth == self.unit_depth:
            self.unit_depth = 0
        self.depth -= 1

    def dimension(self, ref: str) -> None:
        """The used range a sheet declares, e.g. ``A1:H1001``: refused when over the limits."""
        match = _CELL.fullmatch(ref.rpartition(":")[2].replace("$", ""))
        if match is None:
            return  # openpyxl refuses a malformed one
        if int(match["row"]) > self.row_cap:
            raise _too_many_rows()
        if _column_number(match["column"]) > MAX_COLUMNS:
            raise _too_many_columns()


_CELL = re.compile(r"(?P<column>[A-Z]{1,3})(?P<row>[0-9]{1,7})")


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - ord("A") + 1
    return number


def _int(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _too_complex() -> BatchFileError:
    return BatchFileError(_("The workbook is too complex to read: paste the applicants' data into a new workbook."))


def _too_many_columns() -> BatchFileError:
    return BatchFileError(
        _("A sheet has cells beyond column %(count)d: delete the columns right of your data.") % {"count": MAX_COLUMNS}
    )


def parse_moment(value: str) -> datetime | None:
    """An ISO date or date-time; without a zone it is read in the bureau's zone (Asia/Shanghai)."""
    value = value.strip()
    if not value:
        return None
    moment = parse_datetime(value.replace(" ", "T", 1)) if len(value) > 10 else None
    if moment is None:
        day = parse_date(value[:10]) if len(value) >= 10 else None
        if day is None:
            raise ValueError(value)
        moment = datetime.combine(day, time())
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return moment


def check_row(row: ParsedRow, *, manuals: set[str], seen_references: set[str]) -> None:
    """Add row-level error codes (``error_message`` words them); they never carry an ID or a name."""
    from datadomain.services import resident_id_is_valid

    values = row.values
    row.errors.extend(f"empty:{column}" for column in REQUIRED if not values.get(column))
    if values.get("resident_id") and not resident_id_is_valid(values["resident_id"]):
        row.errors.append("invalid_resident_id")
    if values.get("manual") and values["manual"] not in manuals:
        row.errors.append("manual_not_allowed")
    for column in ("consent_signed_at", "consent_expires_at"):
        try:
            parse_moment(values.get(column, ""))
        except ValueError:
            row.errors.append(f"not_a_date:{column}")
    if values.get("consent_sha256") and not SHA256.match(values["consent_sha256"].lower()):
        row.errors.append("invalid_sha256")
    reference = values.get("reference", "")
    if len(reference) > 100:
        row.errors.append("reference_too_long")
    elif reference and reference in seen_references:
        row.errors.append("reference_repeated")
    seen_references.add(reference)


def error_message(code: str) -> str:
    """The reader's-language wording of a row error code (also the service's refusal codes)."""
    kind, _sep, column = code.partition(":")
    messages = {
        "empty": _("%(column)s is empty."),
        "invalid_resident_id": _("resident_id is not a valid resident ID."),
        "manual_not_allowed": _("manual is not an approved manual you may use."),
        "not_a_date": _("%(column)s is not a date."),
        "invalid_sha256": _("consent_sha256 must be 64 hexadecimal characters."),
        "reference_too_long": _("reference is longer than 100 characters."),
        "reference_repeated": _("reference appears twice in this file."),
    }
    if kind in messages:
        return messages[kind] % {"column": column}
    return _("Refused by the service: %(code)s.") % {"code": code}


# --- sealing: applicants' IDs and names are kept only encrypted between preview and run -----------------


def _key() -> bytes:
    return hashlib.sha256(b"portal-batch-rows\x00" + str(settings.SECRET_KEY).encode()).digest()


def seal(rows: list[ParsedRow], *, insurer_id: int) -> bytes:
    nonce = os.urandom(12)
    plain = orjson.dumps([asdict(row) for row in rows])
    return nonce + AESGCM(_key()).encrypt(nonce, plain, str(insurer_id).encode())


def unseal(blob: bytes, *, insurer_id: int) -> list[ParsedRow]:
    plain = AESGCM(_key()).decrypt(blob[:12], blob[12:], str(insurer_id).encode())
    return [ParsedRow(**item) for item in orjson.loads(plain)]
