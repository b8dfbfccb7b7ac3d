"""The feature catalog: loads the versioned YAML files next to this module and evaluates them.

Evaluation is pure: :func:`evaluate` takes one subject's records as plain tuples (already filtered to
counting conditions and valid encounters/observations by the queries in ``datadomain.extraction``)
and returns integer features. See ``catalog.yaml`` for the rules and the other files for sources.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

HERE = Path(__file__).resolve().parent
Kind = Literal["condition", "age_years", "age_points", "encounter_count", "observation_threshold"]


@dataclass(frozen=True)
class Feature:
    name: str
    label: str
    kind: Kind
    icd10: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    bands: tuple[tuple[int, int], ...] = ()  # (min_age, points), ascending
    classes: tuple[str, ...] = ()
    loinc: tuple[str, ...] = ()
    lookback_days: int | None = None
    op: Literal["ge", "gt", "le", "lt"] = "ge"
    threshold: float = 0.0

    @property
    def value_max(self) -> int:
        """The largest value this feature takes: 1 for a flag, the top band's points, an age cap, or
        FEATURE_VALUE_MAX for a count. Tiering sizes its comparison slots from these bounds, and a tighter
        bound means narrower slots and less for the custodian to read in a blinded magnitude."""
        if self.kind in ("condition", "observation_threshold"):
            return 1
        if self.kind == "age_points":
            return max((points for _, points in self.bands), default=0)
        if self.kind == "age_years":
            return AGE_YEARS_MAX
        return FEATURE_VALUE_MAX


@dataclass(frozen=True)
class SubjectRecords:
    """One subject's counting records up to the as-of date, as plain values."""

    birth_date: date | None
    condition_codes: Sequence[str] = ()  # normalised codes (no refuted / entered-in-error)
    encounters: Sequence[tuple[str, date]] = ()  # (class code, start)
    observations: Sequence[tuple[str, date, float]] = ()  # (LOINC, effective date, value)


@dataclass(frozen=True)
class Catalog:
    version: str
    features: dict[str, Feature]
    # normalised ICD-10 prefix -> condition feature names it belongs to
    prefixes: dict[str, tuple[str, ...]] = field(repr=False)
    prefix_lengths: tuple[int, ...] = field(repr=False)
    # Reading rules (catalog.yaml `reading` and `code_systems`; see README.md, "Reading rules").
    not_counting_verification: tuple[str, ...] = ("refuted", "entered-in-error")
    verification_synonyms: dict[str, str] = field(default_factory=dict, repr=False)  # spelling -> code
    code_systems: dict[str, str] = field(default_factory=dict, repr=False)  # system URI -> family
    text_map: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)  # text_key -> codes

    def names(self) -> list[str]:
        return list(self.features)

    def require(self, names: Iterable[str]) -> list[Feature]:
        unknown = [name for name in names if name not in self.features]
        if unknown:
            raise KeyError(f"unknown catalog features: {', '.join(sorted(unknown))}")
        return [self.features[name] for name in names]

    def categories_of(self, code: str) -> set[str]:
        found: set[str] = set()
        for length in self.prefix_lengths:
            found.update(self.prefixes.get(code[:length], ()))
        return found


# Dagger and asterisk marks of the ICD-10 dual classification (E11.2†, its ASCII form E11.2+, N08.3*) and
# the separators hospitals put between a dagger and its asterisk code ("E11.2†N08.3*", "E11.2+/N08.3*").
_MARKS = re.compile(r"[\u2020\u2021*+/,;|]+")


def normalise_code(code: str) -> str:
    """``e11.200x001`` -> ``E11200X001``: NFKC (full-width letters, digits and dots
    become ASCII), upper case, no dot,
    no spaces; dagger and asterisk marks removed. Use :func:`split_codes` for text that may hold a pair."""
    if not code.isascii():
        code = unicodedata.normalize("NFKC", code)
    return _MARKS.sub("", code).strip().upper().replace(".", "").replace(" ", "")


def split_codes(text: str) -> list[str]:
    """The normalised codes in one coding's code text: ``E11.2†N08.3*`` -> ``["E112", "N083"]``."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return [code for part in _MARKS.split(text) if (code := normalise_code(part))]


_TRAILING = "\u3002\u3001.,;: "  # after NFKC: the ideographic full stop and comma, ASCII punctuation
TEXT_KEY_MAX = 200


def text_key(text: str) -> str:
    """A local code or diagnosis text as mapping tables key it: NFKC (full-width forms become ASCII),
    whitespace collapsed to one space, lower case, trailing punctuation removed, at most 200 characters."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return " ".join(text.lower().split()).rstrip(_TRAILING)[:TEXT_KEY_MAX]


def status_key(text: str) -> str:
    """A status spelling as looked up in ``verification_synonyms``: NFKC, trimmed, lower case, ``_`` and
    spaces as ``-``."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return "-".join(text.strip().lower().replace("_", " ").split())


def _feature(entry: dict[str, Any]) -> Feature:
    return Feature(
        name=entry["name"],
        label=entry.get("label", entry["name"]),
        kind=entry["kind"],
        icd10=tuple(normalise_code(code) for code in entry.get("icd10", ())),
        unless=tuple(entry.get("unless", ())),
        bands=tuple((int(band["min_age"]), int(band["points"])) for band in entry.get("bands", ())),
        classes=tuple(entry.get("classes", ())),
        loinc=tuple(entry.get("loinc", ())),
        lookback_days=entry.get("lookback_days"),
        op=entry.get("op", "ge"),
        threshold=float(entry.get("threshold", 0)),
    )


def load(directory: Path = HERE) -> Catalog:
    manifest_bytes = (directory / "catalog.yaml").read_bytes()
    manifest = yaml.safe_load(manifest_bytes)
    digest = hashlib.sha256(manifest_bytes)
    features: dict[str, Feature] = {}
    for filename in manifest["files"]:
        content = (directory / filename).read_bytes()
        digest.update(content)
        for entry in yaml.safe_load(content)["features"]:
            if entry["name"] in features:
                raise ValueError(f"duplicate catalog feature {entry['name']}")
            features[entry["name"]] = _feature(entry)
    for feature in features.values():
        missing = [name for name in feature.unless if name not in features]
        if missing:
            raise ValueError(f"{feature.name}: unknown `unless` features {missing}")
    prefixes: dict[str, list[str]] = {}
    for feature in features.values():
        for prefix in feature.icd10:
            prefixes.setdefault(prefix, []).append(feature.name)
    text_map: dict[str, tuple[str, ...]] = {}
    if manifest.get("text_map"):
        content = (directory / manifest["text_map"]).read_bytes()
        digest.update(content)
        for row in csv.DictReader(io.StringIO(content.decode("utf-8"))):
            text_map[text_key(row["name"])] = tuple(split_codes(row["icd10"]))
    reading = manifest.get("reading") or {}
    synonyms = {
        status_key(str(spelling)): code
        for code, spellings in (reading.get("verification_synonyms") or {}).items()
        for spelling in [code, *spellings]
    }
    not_counting = tuple(reading.get("not_counting_verification") or ("refuted", "entered-in-error"))
    unknown = [code for code in not_counting if code not in synonyms.values()]
    if synonyms and unknown:
        raise ValueError(f"not_counting_verification: unknown statuses {unknown}")
    return Catalog(
        version=f"{manifest['version']}+{digest.hexdigest()[:10]}",
        features=features,
        prefixes={prefix: tuple(names) for prefix, names in prefixes.items()},
        prefix_lengths=tuple(sorted({len(prefix) for prefix in prefixes})),
        not_counting_verification=not_counting,
        verification_synonyms=synonyms,
        code_systems={str(uri): str(family) for uri, family in (manifest.get("code_systems") or {}).items()},
        text_map=text_map,
    )


@cache
def current() -> Catalog:
    return load()


def age_on(birth_date: date, as_of: date) -> int:
    return as_of.year - birth_date.year - ((as_of.month, as_of.day) < (birth_date.month, birth_date.day))


def _compare(value: float, op: str, threshold: float) -> bool:
    return {"ge": value >= threshold, "gt": value > threshold, "le": value <= threshold, "lt": value < threshold}[op]


def _evaluate_one(feature: Feature, records: SubjectRecords, held: set[str], as_of: date) -> int:
    if feature.kind == "condition":
        return int(feature.name in held and not any(name in held for name in feature.unless))
    if feature.kind in ("age_years", "age_points"):
        if records.birth_date is None:
            return 0
        age = max(age_on(records.birth_date, as_of), 0)
        if feature.kind == "age_years":
            return age
        return max((points for min_age, points in feature.bands if age >= min_age), default=0)
    start = as_of - timedelta(days=feature.lookback_days) if feature.lookback_days else date.min
    if feature.kind == "encounter_count":
        return sum(1 for cls, day in records.encounters if cls in feature.classes and start < day <= as_of)
    latest = max(
        ((day, value) for code, day, value in records.observations if code in feature.loinc and start < day <= as_of),
        default=None,
    )
    return int(latest is not None and _compare(latest[1], feature.op, feature.threshold))


# Every feature value lies in [0, its value_max] (at most FEATURE_VALUE_MAX): encrypted tiering sizes its
# comparison slots from these bounds (securecompute.scoring.score_bound), so a value beyond one could give a
# wrong tier. Values are clamped to them here.
FEATURE_VALUE_MAX = 10_000
AGE_YEARS_MAX = 150


def value_bounds(names: Sequence[str]) -> list[int]:
    """Each named feature's ``value_max``, in order (for ``securecompute.scoring.score_bound``)."""
    return [feature.value_max for feature in current().require(names)]


def evaluate(catalog: Catalog, features: Sequence[Feature], records: SubjectRecords, as_of: date) -> list[int]:
    """Integer values of ``features`` for one subject, in order, each within [0, its value_max]."""
    held: set[str] = set()
    for code in set(records.condition_codes):
        held |= catalog.categories_of(code)
    return [min(_evaluate_one(feature, records, held, as_of), feature.value_max) for feature in features]
