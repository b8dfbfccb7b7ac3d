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
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from typing import Any

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


def read_rows(*, filename: str, content: bytes) -> list[dict[str, str]]:
    """The data rows of a CSV or XLSX file as dicts keyed by the known column names."""
    if filename.lower().endswith(".xlsx"):
        table = _xlsx_table(content)
    elif filename.lower().endswith(".csv"):
        table = _csv_table(content)
    else:
        raise BatchFileError(_("Upload a .csv or .xlsx file."))
    if not table:
        raise BatchFileError(_("The file is empty."))
    header = [str(cell or "").strip().lower() for cell in table[0]]
    missing = [column for column in REQUIRED if column not in header]
    if missing:
        raise BatchFileError(_("Missing columns: %(columns)s.") % {"columns": ", ".join(missing)})
    rows = []
    for cells in table[1:]:
        if not any(str(cell or "").strip() for cell in cells):
            continue
        rows.append({name: _cell_text(cells[i]) if i < len(cells) else "" for i, name in enumerate(header)})
    if len(rows) > settings.PORTAL_BATCH_MAX_ROWS:
        raise BatchFileError(_("At most %(count)d rows per batch.") % {"count": settings.PORTAL_BATCH_MAX_ROWS})
    if not rows:
        raise BatchFileError(_("The file has no data rows."))
    return rows


def _csv_table(content: bytes) -> list[list[Any]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BatchFileError(_("Save the CSV file as UTF-8.")) from None
    return [list(row) for row in csv.reader(io.StringIO(text))]


def _xlsx_table(content: bytes) -> list[list[Any]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception:  # noqa: BLE001  # openpyxl raises many types for a damaged file
        raise BatchFileError(_("This is not a readable XLSX file.")) from None
    try:
        sheet = workbook.worksheets[0]
        return [list(row) for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()


def _cell_text(cell: Any) -> str:
    if cell is None:
        return ""
    if isinstance(cell, datetime | date):
        return cell.isoformat()
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip()


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


def row_fingerprint(values: dict[str, str]) -> str:
    return hashlib.sha256(orjson.dumps(values, option=orjson.OPT_SORT_KEYS)).hexdigest()


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
