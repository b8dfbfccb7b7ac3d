"""Small builders of FHIR R4 resources and valid resident IDs for the data-domain tests."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import orjson

from datadomain import identity

ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"


def resident_id(born: date, region: str = "370214", sequence: int = 123) -> str:
    body = f"{region}{born:%Y%m%d}{sequence:03d}"
    return body + identity.check_character(body)


def patient(
    pid: str, born: date, *, name: str = "王小明", rid: str | None = None, version: int = 1, updated: str = "2025-01-01"
) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"versionId": str(version), "lastUpdated": f"{updated}T00:00:00+08:00"},
        "identifier": [{"system": "urn:oid:2.16.156.10011.1.1", "value": rid or resident_id(born)}],
        "name": [{"text": name}],
        "gender": "male",
        "birthDate": born.isoformat(),
    }


def condition(
    cid: str,
    pid: str,
    code: str,
    *,
    status: str = "confirmed",
    onset: str = "2020-01-01",
    system: str = ICD10,
    version: int = 1,
) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "meta": {"versionId": str(version), "lastUpdated": "2025-01-01T00:00:00Z"},
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": status}]
        },
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset,
    }


def encounter(eid: str, pid: str, start: str, *, cls: str = "IMP", status: str = "finished") -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": status,
        "class": {"code": cls},
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": start},
    }


def observation(oid: str, pid: str, code: str, value: float, day: str, *, unit: str = "%") -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": day,
    }
    if code == "85354-9":
        resource["component"] = [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": value}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 80}},
        ]
    else:
        resource["valueQuantity"] = {"value": value, "unit": unit}
    return resource


def write_ndjson(path: Path, resources: list[dict[str, Any] | bytes]) -> Path:
    path.write_bytes(b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in resources))
    return path
