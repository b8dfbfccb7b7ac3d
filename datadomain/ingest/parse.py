"""Parse and validate one FHIR R4 NDJSON line into a row tuple, or say why it is rejected.

Pure functions, no database: the hot loop of ``ingest_fhir``. Reasons never quote values from the
line (no IDs, names or codes), because they are shown in summaries and logs.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

import orjson

from datadomain import catalog, identity
from datadomain.catalog import split_codes, status_key, text_key

# FHIR R4 id datatype; ids and references are therefore safe to write into COPY text unescaped.
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
RESIDENT_ID_SYSTEM = "urn:oid:2.16.156.10011.1.1"
# A reference to a Patient: relative, absolute (``https://host/fhir/Patient/id``) or versioned
# (``.../Patient/id/_history/3``); the group is the id.
_PATIENT_REFERENCE = re.compile(
    r"(?:[^/]+:/(?:/[^/]+)+/)?Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?"
)
_DROP_DOTS = str.maketrans("", "", ". ")
# Clinical dates are calendar dates in the bureau's time zone: a dateTime in another zone is converted.
LOCAL_ZONE = ZoneInfo("Asia/Shanghai")
MAX_CODES = 8  # ICD-10-family codes kept per Condition (space-separated in ``code``)
CODES_MAX_CHARS = 120
# onsetAge units (UCUM, as FHIR Age requires) -> interval unit, and the largest value accepted.
# (interval unit, factor, largest count)
_AGE_UNITS = {"a": ("years", 1, 150), "mo": ("months", 1, 1800), "wk": ("days", 7, 55_000), "d": ("days", 1, 55_000),
              "h": ("hours", 0, 0), "min": ("hours", 0, 0)}  # fmt: skip
_AGE_WORDS = {"year": "a", "years": "a", "yr": "a", "month": "mo", "months": "mo", "week": "wk", "weeks": "wk",
              "day": "d", "days": "d", "hour": "h", "hours": "h", "minute": "min", "minutes": "min"}  # fmt: skip
LOINC = "http://loinc.org"
BP_PANEL, SYSTOLIC, DIASTOLIC = "85354-9", "8480-6", "8462-4"
HBA1C_CODES = {"4548-4", "17856-6"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE_GRACE_DAYS = 1
# Values read again and again in a feed (the dates of a few years, an export's lastUpdated stamps, the
# spellings of a status) are parsed once per parser: at most this many of each are remembered.
MEMO_SIZE = 1 << 16


T = TypeVar("T")


class LineError(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class PatientRow(NamedTuple):
    resource_id: str
    resident_id: str
    name: str
    birth_date: date
    sex: str
    subject_key: str
    resident_id_masked: str
    version_id: int
    last_updated: datetime
    # Staged, not stored with the patient: the writer keeps it in datadomain.PatientContact (identity zone).
    phone: str = ""


class ConditionRow(NamedTuple):
    resource_id: str
    patient_ref: str
    version_id: int
    last_updated: datetime
    code_system: str
    code: str
    verification_status: str
    clinical_status: str
    onset_date: date | None
    local_source: str  # a Condition without ICD-10 coding: its mapping source and local code or text
    local_code: str
    # onsetAge as a PostgreSQL interval literal (``"52 years"``, ``"30 days"``): the writer adds it to the
    # subject's birth date. Staged only, never stored.
    onset_age: str | None = None


class EncounterRow(NamedTuple):
    resource_id: str
    patient_ref: str
    version_id: int
    last_updated: datetime
    class_code: str
    status: str
    period_start: date
    period_end: date | None


class ObservationRow(NamedTuple):
    resource_id: str
    patient_ref: str
    version_id: int
    last_updated: datetime
    code: str
    status: str
    effective_date: date
    value: float
    value_secondary: float | None
    unit: str


Row = PatientRow | ConditionRow | EncounterRow | ObservationRow


@dataclass(frozen=True)
class Parser:
    pepper: bytes
    today: date
    catalog: catalog.Catalog = field(default_factory=catalog.current)
    # Local code systems that have a mapping table (datadomain.mapping), read once per run.
    local_systems: frozenset[str] = frozenset()
    # Memos of pure functions of the text (see MEMO_SIZE): clinical dates, lastUpdated instants, statuses.
    _dates: dict[str, date] = field(default_factory=dict, init=False, repr=False, compare=False)
    _calendar: dict[str, date] = field(default_factory=dict, init=False, repr=False, compare=False)
    _instants: dict[str, datetime] = field(default_factory=dict, init=False, repr=False, compare=False)
    _statuses: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def parse(self, line: bytes | str) -> Row:
        # PostgreSQL text cannot hold NUL; a raw NUL is invalid JSON anyway, an escaped one is refused here.
        if (line if isinstance(line, bytes) else line.encode()).find(b"\\u0000") >= 0:
            raise LineError("invalid_value", "the line contains a NUL character")
        try:
            resource = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise LineError("invalid_json", "the line is not valid JSON") from None
        if not isinstance(resource, dict):
            raise LineError("invalid_json", "the line is not a JSON object")
        kind = resource.get("resourceType")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise LineError("unknown_resource_type", "resourceType is missing or not one of the supported types")
        resource_id = resource.get("id")
        if not isinstance(resource_id, str) or not _FHIR_ID.fullmatch(resource_id):
            raise LineError("missing_id", "the resource has no valid id ([A-Za-z0-9-.]{1,64})")
        try:
            return handler(self, resource, resource_id)
        except LineError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError):
            raise LineError("malformed_resource", f"the {kind} resource is missing a required element") from None

    # --- resource types ----------------------------------------------------------------------------

    def patient(self, resource: dict[str, Any], resource_id: str) -> PatientRow:
        raw_id = _resident_id(resource.get("identifier") or [])
        if raw_id is None:
            raise LineError("missing_resident_id", "no identifier of type NNCHN (resident ID)")
        resident_id = identity.normalise(raw_id)
        id_birth = identity.validated_birth_date(resident_id, self.today)
        if id_birth is None:
            raise LineError("invalid_resident_id", "the resident ID fails GB 11643 validation")
        declared = resource.get("birthDate")
        if declared is not None and self.date_of(declared) != id_birth:
            raise LineError("birth_date_mismatch", "birthDate differs from the birth date in the resident ID")
        name = _name(resource.get("name") or [])
        if not name:
            raise LineError("missing_name", "the patient has no name")
        sex = resource.get("gender") or "unknown"
        if sex not in ("male", "female", "other", "unknown"):
            raise LineError("invalid_value", "gender is not a FHIR administrative gender")
        version_id, last_updated = self.meta(resource)
        key = hmac.digest(self.pepper, resident_id.encode("ascii"), "sha256").hex()  # one-shot, in C
        return PatientRow(
            resource_id,
            resident_id,
            name[:200],
            id_birth,
            sex,
            key,
            identity.mask_normalised(resident_id),
            version_id,
            last_updated,
            _phone(resource.get("telecom"), self.today),
        )

    def condition(self, resource: dict[str, Any], resource_id: str) -> ConditionRow:
        patient_ref = _subject(resource)
        concept = resource.get("code")
        try:
            family, codes = self.icd10_codes(concept)
            local_source = local_code = ""
        except LineError as error:
            if error.code != "unknown_code_system":
                raise
            family, codes = "local", ""
            local_source, local_code = self.local(resource, concept, error)
        onset, onset_age = self.onset(resource)
        version_id, last_updated = self.meta(resource)
        return ConditionRow(
            resource_id,
            patient_ref,
            version_id,
            last_updated,
            family,
            codes,
            self.verification(resource.get("verificationStatus")),
            self.status(_status_text(resource.get("clinicalStatus")))[:20],
            onset,
            local_source,
            local_code,
            onset_age,
        )

    def local(self, resource: dict[str, Any], concept: object, error: LineError) -> tuple[str, str]:
        """A Condition without an ICD-10-family coding: the first coding of a local system that has a
        mapping table, else the diagnosis text (source ``text:`` + ``meta.source``); neither: ``error``."""
        if not isinstance(concept, dict):
            raise error
        codings = concept.get("coding")
        for coding in codings if isinstance(codings, list) else ():
            if isinstance(coding, dict) and coding.get("system") in self.local_systems:
                code = coding.get("code")
                key = text_key(code) if isinstance(code, str) else ""
                if key:
                    return str(coding["system"]), key
        text = concept.get("text")
        key = text_key(text) if isinstance(text, str) else ""
        if not key:
            raise error
        origin = (resource.get("meta") or {}).get("source")
        return "text:" + (text_key(origin) if isinstance(origin, str) else ""), key

    def icd10_codes(self, concept: object) -> tuple[str, str]:
        """Every code of every ICD-10-family coding, space-separated (first family found, codes in order,
        no repeats)."""
        systems = self.catalog.code_systems
        family = ""
        codes: list[str] = []
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings if isinstance(codings, list) else ():
            if not isinstance(coding, dict):
                continue
            system = coding.get("system")
            if not isinstance(system, str) or system not in systems:
                continue
            family = family or systems[system]
            raw = coding.get("code")
            if not isinstance(raw, str):
                continue
            simple = raw.translate(_DROP_DOTS).upper()
            if simple.isascii() and simple.isalnum() and len(simple) <= 20:  # the common case: one plain code
                if simple not in codes:
                    codes.append(simple)
                continue
            for code in split_codes(raw):
                if not (code.isascii() and code.isalnum() and len(code) <= 20):
                    raise LineError("invalid_code", "an ICD-10 code is malformed")
                if code not in codes:
                    codes.append(code)
        if not family:
            raise LineError("unknown_code_system", "no ICD-10-family coding")
        if not codes:
            raise LineError("invalid_code", "the ICD-10 codings have no code")
        joined = codes[0] if len(codes) == 1 else " ".join(codes)
        if len(codes) > MAX_CODES or len(joined) >= CODES_MAX_CHARS:
            raise LineError("invalid_code", "the condition has too many ICD-10 codes")
        return family, joined

    def verification(self, concept: object) -> str:
        """The verificationStatus as one catalog code, whatever its encoding ("" when absent)."""
        text = _status_text(concept)
        if not text:
            return ""
        synonyms = self.catalog.verification_synonyms
        code = synonyms.get(text)
        if code is None:
            code = synonyms.get(self.status(text))
        if code is None:
            raise LineError("unknown_verification_status", "verificationStatus is not a known status")
        return code

    def onset(self, resource: dict[str, Any]) -> tuple[date | None, str | None]:
        """onset[x] (dateTime, Period, Age, Range of ages; a String gives no date), else recordedDate."""
        if (raw := resource.get("onsetDateTime")) is not None:
            return self.past_date(raw), None
        if (period := resource.get("onsetPeriod")) is not None:
            start = period.get("start") or period.get("end")
            if start:
                return self.past_date(start), None
        age = resource.get("onsetAge")
        if age is None and isinstance(resource.get("onsetRange"), dict):
            age = resource["onsetRange"].get("low")
        if age is not None:
            return None, _age_interval(age)
        recorded = resource.get("recordedDate")
        return (self.past_date(recorded) if recorded else None), None

    def encounter(self, resource: dict[str, Any], resource_id: str) -> EncounterRow:
        patient_ref = _subject(resource)
        cls = resource.get("class") or {}
        class_code = str(cls.get("code") or "")[:16]
        if not class_code:
            raise LineError("malformed_resource", "the encounter has no class")
        period = resource.get("period") or {}
        if not period.get("start"):
            raise LineError("malformed_resource", "the encounter has no period.start")
        start = self.past_date(period["start"])
        end = self.date_of(period["end"]) if period.get("end") else None
        if end is not None and end < start:
            raise LineError("impossible_date", "the encounter ends before it starts")
        version_id, last_updated = self.meta(resource)
        status = str(resource.get("status") or "unknown")[:20]
        return EncounterRow(resource_id, patient_ref, version_id, last_updated, class_code, status, start, end)

    def observation(self, resource: dict[str, Any], resource_id: str) -> ObservationRow:
        patient_ref = _subject(resource)
        coding = _pick_coding(resource.get("code"), _LOINC_SYSTEMS)
        if coding is None:
            raise LineError("unknown_code_system", "no LOINC coding")
        code = str(coding.get("code") or "")[:16]
        effective = resource.get("effectiveDateTime") or (resource.get("effectivePeriod") or {}).get("start")
        if not effective:
            raise LineError("malformed_resource", "the observation has no effective date")
        effective_date = self.past_date(effective)
        secondary: float | None = None
        if code == BP_PANEL:
            components = {
                (_pick_coding(component.get("code"), _LOINC_SYSTEMS) or {}).get("code"): component["valueQuantity"]
                for component in resource.get("component") or []
            }
            if SYSTOLIC not in components:
                raise LineError("missing_value", "the blood-pressure panel has no systolic component")
            value, unit = _quantity(components[SYSTOLIC])
            if DIASTOLIC in components:
                secondary = _quantity(components[DIASTOLIC])[0]
        else:
            if "valueQuantity" not in resource:
                raise LineError("missing_value", "the observation has no valueQuantity")
            value, unit = _quantity(resource["valueQuantity"])
            if code in HBA1C_CODES and unit.lower() == "mmol/mol":
                # IFCC mmol/mol to NGSP %: the IFCC-NGSP master equation (Hoelzel et al., Clin Chem 2004).
                value, unit = round(value / 10.929 + 2.15, 2), "%"
        version_id, last_updated = self.meta(resource)
        status = str(resource.get("status") or "unknown")[:20]
        return ObservationRow(
            resource_id, patient_ref, version_id, last_updated, code, status, effective_date, value, secondary, unit
        )

    # --- shared elements ---------------------------------------------------------------------------

    def meta(self, resource: dict[str, Any]) -> tuple[int, datetime]:
        meta = resource.get("meta") or {}
        version = meta.get("versionId")
        try:
            version_id = int(version) if version is not None else 0
        except (TypeError, ValueError):
            raise LineError("invalid_value", "meta.versionId is not an integer") from None
        if not 0 <= version_id < 2**63:
            raise LineError("invalid_value", "meta.versionId is out of range")
        raw = meta.get("lastUpdated")
        if not raw:
            return version_id, EPOCH
        if not isinstance(raw, str):
            raise LineError("invalid_date", "meta.lastUpdated is not a valid instant")
        if (known := self._instants.get(raw)) is not None:
            return version_id, known
        return version_id, _remember(self._instants, raw, self.instant(raw))

    def instant(self, raw: str) -> datetime:
        """A FHIR instant (with its zone) in UTC."""
        try:
            moment = datetime.fromisoformat(raw)
            if moment.tzinfo is None:
                raise LineError("invalid_date", "meta.lastUpdated has no time zone")
            return moment.astimezone(UTC)
        except (TypeError, ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted to UTC
            raise LineError("invalid_date", "meta.lastUpdated is not a valid instant") from None

    def parse_date(self, raw: object) -> date:
        """FHIR date or dateTime (``2024``, ``2024-05``, ``2024-05-17``, ``2024-05-17T08:00:00+08:00``)."""
        if not isinstance(raw, str) or len(raw) < 4:
            raise LineError("invalid_date", "a date is missing or malformed")
        if len(raw) > 10:
            return self.local_date(raw)
        text = raw
        if len(text) == 4:
            text += "-01-01"
        elif len(text) == 7:
            text += "-01"
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise LineError("invalid_date", "a date is not a real calendar date") from None

    def local_date(self, raw: str) -> date:
        """The calendar date in Asia/Shanghai of a FHIR dateTime (one without a zone is local already)."""
        if raw.endswith("+08:00") and raw[:4] >= "1992" and raw[10:11] == "T":
            # Already Beijing time, and Shanghai has kept +08:00 all year since 1992: the date part.
            return self.parse_date(raw[:10])
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise LineError("invalid_date", "a dateTime is not a valid date and time") from None
        if moment.tzinfo is None:
            return moment.date()
        try:
            return moment.astimezone(LOCAL_ZONE).date()
        except OverflowError:
            raise LineError("invalid_date", "a dateTime is out of range") from None

    def date_of(self, raw: object) -> date:
        """:meth:`parse_date`, remembered."""
        if isinstance(raw, str) and (known := self._calendar.get(raw)) is not None:
            return known
        value = self.parse_date(raw)
        return _remember(self._calendar, raw, value) if isinstance(raw, str) else value

    def past_date(self, raw: object) -> date:
        if isinstance(raw, str) and (known := self._dates.get(raw)) is not None:
            return known
        value = self.parse_date(raw)
        if value.year < 1870 or (value - self.today).days > FAR_FUTURE_GRACE_DAYS:
            raise LineError("impossible_date", "a clinical date lies in the future or before 1870")
        return _remember(self._dates, raw, value) if isinstance(raw, str) else value

    def status(self, text: str) -> str:
        """:func:`status_key` of ``text``, remembered."""
        if (known := self._statuses.get(text)) is not None:
            return known
        return _remember(self._statuses, text, status_key(text))


def _remember(memo: dict[str, T], key: str, value: T) -> T:
    if len(memo) >= MEMO_SIZE:
        memo.clear()
    memo[key] = value
    return value


def _resident_id(identifiers: list[dict[str, Any]]) -> str | None:
    for identifier in identifiers:
        codings = (identifier.get("type") or {}).get("coding") or []
        if identifier.get("system") == RESIDENT_ID_SYSTEM or any(c.get("code") == "NNCHN" for c in codings):
            value = identifier.get("value")
            return value if isinstance(value, str) else None
    return None


_PHONE_NOISE = re.compile(r"[\s\-().\u00a0/]")
_PHONE = re.compile(r"\+?[0-9]{5,15}")


def _phone(telecom: Any, today: date) -> str:
    """The number to text the resident at, from ``Patient.telecom``: a ``phone`` or ``sms`` contact point
    not marked ``old`` and not ended before ``today``, a ``mobile`` one first, then ``sms``, then by
    ``rank``, then in order. Normalised (separators dropped, ``00`` as ``+``, a Chinese mobile number given
    ``+86``); '' when there is none or it is not a plausible number. A bad number never refuses the
    patient: only sign-in codes need it."""
    if not isinstance(telecom, list):
        return ""
    candidates = []
    for order, point in enumerate(telecom):
        if not isinstance(point, dict) or point.get("system") not in ("phone", "sms") or point.get("use") == "old":
            continue
        end = (point.get("period") or {}).get("end") if isinstance(point.get("period"), dict) else None
        if isinstance(end, str) and end[:10] < today.isoformat():
            continue
        number = _normalised_phone(point.get("value"))
        if not number:
            continue
        rank = point.get("rank")
        rank = rank if isinstance(rank, int) and not isinstance(rank, bool) and rank > 0 else 1 << 31
        candidates.append((point.get("use") != "mobile", point.get("system") != "sms", rank, order, number))
    return min(candidates)[-1] if candidates else ""


def _normalised_phone(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 64:
        return ""
    number = _PHONE_NOISE.sub("", value.strip().removeprefix("tel:"))
    if number.startswith("00"):
        number = "+" + number[2:]
    if re.fullmatch(r"1[3-9][0-9]{9}", number):
        number = "+86" + number
    elif re.fullmatch(r"861[3-9][0-9]{9}", number):
        number = "+" + number
    return number if _PHONE.fullmatch(number) else ""


def _name(names: list[dict[str, Any]]) -> str:
    for name in names:
        if name.get("text"):
            return str(name["text"]).strip()
        family = name.get("family") or ""
        given = "".join(name.get("given") or [])
        if family or given:
            return f"{family}{given}".strip()
    return ""


def _subject(resource: dict[str, Any]) -> str:
    reference = (resource.get("subject") or {}).get("reference")
    if isinstance(reference, str):
        if reference.startswith("Patient/") and _FHIR_ID.fullmatch(reference, 8):
            return reference[8:]  # the common form, without a regular expression
        if len(reference) <= 1000 and (match := _PATIENT_REFERENCE.fullmatch(reference)):
            return match[1]
    raise LineError("missing_subject", "subject is missing or is not a Patient reference")


def _age_interval(age: object) -> str:
    """A FHIR Age as an interval literal; the age must be a number of years, months, weeks, days or hours."""
    if not isinstance(age, dict):
        raise LineError("invalid_value", "onsetAge is not an Age")
    value = age.get("value")
    unit = age.get("code") or age.get("unit")
    unit = _AGE_WORDS.get(unit.strip().lower(), unit.strip()) if isinstance(unit, str) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or unit not in _AGE_UNITS:
        raise LineError("invalid_value", "onsetAge has no numeric value in years, months, weeks, days or hours")
    name, factor, limit = _AGE_UNITS[unit]
    if not 0 <= value <= 1e6:
        raise LineError("invalid_value", "onsetAge is out of range")
    count = int(value) * factor  # whole units reached: 52.7 years is on or after the 52nd birthday
    if count > limit:
        raise LineError("invalid_value", "onsetAge is out of range")
    return "0 days" if name == "hours" else f"{count} {name}"


def _pick_coding(concept: object, systems: dict[str, str]) -> dict[str, Any] | None:
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or []:
        if coding.get("system") in systems:
            return coding  # type: ignore[no-any-return]
    return None


_STATUS_SYSTEMS = {
    "http://terminology.hl7.org/CodeSystem/condition-ver-status": "ver",  # R4
    "http://terminology.hl7.org/CodeSystem/condition-clinical": "clin",
    "http://hl7.org/fhir/condition-ver-status": "ver",  # STU3 and DSTU2
    "http://hl7.org/fhir/condition-clinical": "clin",
}
_LOINC_SYSTEMS = {LOINC: "loinc"}


def _status_text(concept: object) -> str:
    """A status in any encoding, as sent (see :func:`status_key` for its normal form): a plain string
    (STU3), the code of the first coding of the R4 or STU3 status system, else of any coding with a code,
    else ``text``. At most 40 characters."""
    if isinstance(concept, str):
        return concept[:40]
    if not isinstance(concept, dict):
        return ""
    codings = concept.get("coding")
    if isinstance(codings, list) and codings:
        first = codings[0]
        if isinstance(first, dict) and first.get("system") in _STATUS_SYSTEMS and isinstance(first.get("code"), str):
            return str(first["code"])[:40]  # the common case
        found = [c for c in codings if isinstance(c, dict) and isinstance(c.get("code"), str)]
        chosen = next((c for c in found if c.get("system") in _STATUS_SYSTEMS), found[0] if found else None)
        if chosen is not None:
            return str(chosen["code"])[:40]
    text = concept.get("text")
    return text[:40] if isinstance(text, str) else ""


def _quantity(quantity: dict[str, Any]) -> tuple[float, str]:
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LineError("missing_value", "a quantity has no numeric value")
    return float(value), str(quantity.get("unit") or quantity.get("code") or "")[:16]


_HANDLERS: dict[str, Callable[[Parser, dict[str, Any], str], Row]] = {
    "Patient": Parser.patient,
    "Condition": Parser.condition,
    "Encounter": Parser.encounter,
    "Observation": Parser.observation,
}
