"""Small FHIR R4 NDJSON builders for tests: real files, ingested by the real ``ingest_fhir``."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

from datadomain import identity

ICD10 = "http://hl7.org/fhir/sid/icd-10"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_counter = itertools.count(1)


def resident_id(birth: date, region: str = "370214", sequence: int = 123) -> str:
    body = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return body + identity.check_character(body)


def patient(resource_id: str, rid: str, name: str, birth: date, gender: str = "female") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": resource_id,
        "identifier": [
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NNCHN"}]},
                "system": "urn:oid:2.16.156.10011.1.1",
                "value": rid,
            }
        ],
        "name": [{"text": name}],
        "gender": gender,
        "birthDate": birth.isoformat(),
    }


def condition(
    patient_id: str, code: str, *, onset: str = "2020-01-01", verification: str = "confirmed"
) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"cond-{next(_counter)}",
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": verification}]},
        "code": {"coding": [{"system": ICD10, "code": code}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "onsetDateTime": onset,
    }


def write_ndjson(path: Path, resources: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(resource, ensure_ascii=False) + "\n" for resource in resources))
    return path
