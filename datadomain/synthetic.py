"""Deterministic synthetic FHIR R4 bulk data for demos, tests and benchmarks.

Same ``seed`` and ``patients`` give byte-identical files. The population has realistic Chinese names,
valid resident IDs with real region codes, multimorbidity (Charlson/Elixhauser conditions), noise codes,
refuted and entered-in-error conditions, China clinical-edition extension codes, encounters and
HbA1c/BMI/blood-pressure observations; ``bad_lines`` replaces that fraction of lines with malformed ones.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from datadomain import identity

# GB/T 2260 county-level codes of a few cities (Beijing Dongcheng, Shanghai Huangpu, Guangzhou Yuexiu,
# Shenzhen Futian, Chengdu Jinjiang, Hangzhou Shangcheng, Wuhan Jiang'an, Nanjing Xuanwu, Qingdao Shinan,
# Qingdao Jimo, Xi'an Beilin, Shenyang Heping, Jinan Lixia, Changsha Furong, Zhengzhou Jinshui).
REGIONS = (
    "110101", "310101", "440104", "440304", "510104", "330102", "420102", "320102", "370202", "370215",
    "610103", "210102", "370102", "430102", "410105",
)  # fmt: skip
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红玉兰文斌宇浩然欣怡子涵梓萱俊杰晨曦雨轩佳琪"
# (code as written, weight): Charlson/Elixhauser conditions, some with China clinical-edition extensions.
CONDITIONS = (
    ("I10.x00", 30), ("E11.900", 14), ("E11.200x001", 5), ("E11.400", 3), ("I50.900", 4), ("I25.200", 3),
    ("I21.900", 2), ("I63.900", 4), ("J44.900", 6), ("J45.900", 4), ("K74.600", 1), ("K70.300", 1),
    ("K72.100", 0.5), ("N18.500", 2), ("C34.900", 1.5), ("C50.900", 1.5), ("C78.000", 0.6), ("C16.900", 1),
    ("F32.900", 4), ("F03.x00", 1), ("G30.900", 0.6), ("M06.900", 1.5), ("K25.700", 1.5), ("E66.900", 5),
    ("I48.x00", 3), ("E03.900", 3), ("B18.100", 2), ("I70.200", 1.5), ("G81.900", 0.4), ("B20.x00", 0.2),
    ("D50.900", 2), ("F10.200", 1), ("E87.100", 1),
)  # fmt: skip
NOISE = ("J06.900", "K29.700", "M54.500", "R51.x00", "H52.100", "Z00.000", "J20.900", "L30.900", "K59.000")
ICD10 = "http://hl7.org/fhir/sid/icd-10"
VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CLIN = "http://terminology.hl7.org/CodeSystem/condition-clinical"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LOINC = "http://loinc.org"


@dataclass(frozen=True)
class Person:
    resource_id: str
    resident_id: str
    name: str
    birth_date: date
    sex: str


def resident_id(rng: random.Random, born: date, sex: str) -> str:
    sequence = rng.randrange(0, 500) * 2 + (1 if sex == "male" else 0)
    body = f"{rng.choice(REGIONS)}{born:%Y%m%d}{sequence:03d}"
    return body + identity.check_character(body)


def person(rng: random.Random, index: int, today: date, issued: set[str] | None = None) -> Person:
    """A synthetic resident; ``issued`` (the IDs handed out so far) keeps resident IDs unique, as the
    real registry does, so that only ``--bad-lines`` produces quarantined lines."""
    sex = rng.choice(("male", "female"))
    age_days = int(rng.triangular(18 * 365.25, 92 * 365.25, 52 * 365.25))
    born = today - timedelta(days=age_days)
    name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
    rid = resident_id(rng, born, sex)
    while issued is not None and rid in issued:
        rid = resident_id(rng, born, sex)
    if issued is not None:
        issued.add(rid)
    return Person(f"pat-{index:08d}", rid, name, born, sex)


def _meta(rng: random.Random, day: date) -> dict[str, Any]:
    return {"versionId": "1", "lastUpdated": f"{day.isoformat()}T{rng.randrange(24):02d}:00:00+08:00"}


def _day_between(rng: random.Random, start: date, end: date) -> date:
    return start + timedelta(days=rng.randrange(max((end - start).days, 1)))


def resources(rng: random.Random, who: Person, index: int, today: date) -> Iterator[dict[str, Any]]:
    yield {
        "resourceType": "Patient",
        "id": who.resource_id,
        "meta": _meta(rng, today),
        "identifier": [
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NNCHN"}]},
                "system": "urn:oid:2.16.156.10011.1.1",
                "value": who.resident_id,
            }
        ],
        "name": [{"text": who.name, "family": who.name[0], "given": [who.name[1:]]}],
        "gender": who.sex,
        "birthDate": who.birth_date.isoformat(),
    }
    adult = who.birth_date + timedelta(days=18 * 365)
    ref = {"reference": f"Patient/{who.resource_id}"}
    age = (today - who.birth_date).days / 365.25
    burden = max(0, int(rng.gauss(age / 18, 1.5)))
    codes = rng.choices([c for c, _ in CONDITIONS], weights=[w for _, w in CONDITIONS], k=burden)
    codes += rng.sample(NOISE, k=rng.randrange(0, 4))
    for number, code in enumerate(codes):
        status = rng.choices(("confirmed", "provisional", "refuted", "entered-in-error"), (88, 6, 4, 2))[0]
        yield {
            "resourceType": "Condition",
            "id": f"cond-{index:08d}-{number:02d}",
            "meta": _meta(rng, today),
            "clinicalStatus": {"coding": [{"system": CLIN, "code": rng.choice(("active", "active", "resolved"))}]},
            "verificationStatus": {"coding": [{"system": VER, "code": status}]},
            "code": {"coding": [{"system": ICD10, "code": code if rng.random() < 0.7 else code.replace(".", "")}]},
            "subject": ref,
            "onsetDateTime": _day_between(rng, adult, today).isoformat(),
        }
    for number in range(rng.randrange(1, 3 + len(codes) // 2)):
        cls = rng.choices(("AMB", "IMP", "EMER"), (70, 18, 12))[0]
        start = _day_between(rng, max(adult, today - timedelta(days=1500)), today)
        end = start + timedelta(days=rng.randrange(1, 15) if cls == "IMP" else 0)
        yield {
            "resourceType": "Encounter",
            "id": f"enc-{index:08d}-{number:02d}",
            "meta": _meta(rng, today),
            "status": "finished",
            "class": {"system": ACT, "code": cls},
            "subject": ref,
            "period": {"start": f"{start.isoformat()}T08:00:00+08:00", "end": f"{end.isoformat()}T17:00:00+08:00"},
        }
    diabetic = any(code.startswith("E11") for code in codes)
    for number in range(rng.randrange(0, 5)):
        yield _observation(rng, who, index, number, today, diabetic, ref)


def _observation(
    rng: random.Random, who: Person, index: int, number: int, today: date, diabetic: bool, ref: dict[str, str]
) -> dict[str, Any]:
    kind = rng.choice(("hba1c", "bmi", "bp"))
    day = _day_between(rng, today - timedelta(days=1000), today)
    base: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"obs-{index:08d}-{number:02d}",
        "meta": _meta(rng, today),
        "status": "final",
        "subject": ref,
        "effectiveDateTime": f"{day.isoformat()}T09:30:00+08:00",
    }
    if kind == "hba1c":
        value = round(rng.gauss(7.6 if diabetic else 5.5, 1.0 if diabetic else 0.4), 1)
        code = rng.choice(("4548-4", "17856-6"))
        base["code"] = {"coding": [{"system": LOINC, "code": code}]}
        base["valueQuantity"] = {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
    elif kind == "bmi":
        base["code"] = {"coding": [{"system": LOINC, "code": "39156-5"}]}
        base["valueQuantity"] = {"value": round(rng.gauss(24.5, 4.0), 1), "unit": "kg/m2"}
    else:
        systolic = int(rng.gauss(128, 18))
        base["code"] = {"coding": [{"system": LOINC, "code": "85354-9"}]}
        base["component"] = [
            {"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": {"value": value, "unit": "mmHg"}}
            for code, value in (("8480-6", systolic), ("8462-4", int(systolic * 0.62)))
        ]
    return base


def malformed(rng: random.Random, resource: dict[str, Any]) -> bytes:
    """A broken variant of a line: each kind of error the ingest must quarantine."""
    kind = rng.choice(("json", "type", "subject", "system", "date", "id_check"))
    broken = orjson.loads(orjson.dumps(resource))
    if kind == "json":
        return orjson.dumps(resource)[:-7]
    if kind == "type":
        broken["resourceType"] = "MedicationRequest"
    elif kind == "subject" and "subject" in broken:
        broken["subject"] = {"reference": "Patient/does-not-exist"}
    elif kind == "system" and "code" in broken:
        broken["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}
    elif kind == "id_check" and broken["resourceType"] == "Patient":
        value = broken["identifier"][0]["value"]
        broken["identifier"][0]["value"] = value[:17] + ("0" if value[17] != "0" else "1")
    else:
        broken["meta"] = {"lastUpdated": "2024-02-30T00:00:00Z"}
    return orjson.dumps(broken)


def generate(
    *, patients: int, seed: int, out: Path, bad_lines: float = 0.0, today: date | None = None, gz: bool = False
) -> dict[str, int]:
    """Write ``<Type>.ndjson`` (or ``.ndjson.gz``) files under ``out``; return the line counts by type."""
    rng = random.Random(seed)  # noqa: S311 - reproducible synthetic data, not a secret
    today = today or date(2026, 6, 30)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ".ndjson.gz" if gz else ".ndjson"
    handles: dict[str, IO[bytes]] = {}
    counts: dict[str, int] = {}
    with ExitStack() as stack:
        for kind in ("Patient", "Condition", "Encounter", "Observation"):
            path = out / f"{kind}{suffix}"
            opened = gzip.open(path, "wb", compresslevel=3) if gz else path.open("wb")  # noqa: SIM115 - closed by the stack
            handles[kind] = stack.enter_context(opened)  # type: ignore[arg-type]
            counts[kind] = 0
        issued: set[str] = set()
        for index in range(patients):
            who = person(rng, index, today, issued)
            for resource in resources(rng, who, index, today):
                kind = resource["resourceType"]
                line = malformed(rng, resource) if bad_lines and rng.random() < bad_lines else orjson.dumps(resource)
                handles[kind].write(line + b"\n")
                counts[kind] += 1
    return counts
