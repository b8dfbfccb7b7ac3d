"""Reads of the data domain for other apps. Everything returned is a plain value or dataclass,
never a model instance (underwriting and insurer_portal may not import ``datadomain.models``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from datadomain import catalog
from datadomain.errors import DomainError
from datadomain.extraction import features_for_patients
from datadomain.models import Patient

BULK_CHUNK = 500


def catalog_feature_names() -> list[str]:
    """Every feature the catalog defines, in catalog order (see ``datadomain/catalog/*.yaml``)."""
    return catalog.current().names()


def catalog_version() -> str:
    """The effective catalog version: declared version plus a hash of the catalog files."""
    return catalog.current().version


def _check_names(feature_names: Sequence[str]) -> None:
    unknown = sorted(set(feature_names) - set(catalog.current().features))
    if unknown:
        raise DomainError("invalid_input", f"Unknown catalog features: {', '.join(unknown)}.")


def subject_features(*, subject_key: str, feature_names: list[str], as_of: date) -> dict[str, int]:
    """One subject's integer features on ``as_of``; DomainError ``unknown_subject`` if not in the store."""
    found = subjects_features(subject_keys=[subject_key], feature_names=feature_names, as_of=as_of)
    if subject_key not in found:
        raise DomainError("unknown_subject", "The subject is not known to the data domain.")
    return found[subject_key]


def subjects_features(*, subject_keys: list[str], feature_names: list[str], as_of: date) -> dict[str, dict[str, int]]:
    """Bulk, set-based: a few queries per chunk of subjects. Unknown subject keys are left out."""
    _check_names(feature_names)
    result: dict[str, dict[str, int]] = {}
    for start in range(0, len(subject_keys), BULK_CHUNK):
        chunk = subject_keys[start : start + BULK_CHUNK]
        ids = dict(Patient.objects.filter(subject_key__in=chunk).values_list("pk", "subject_key"))
        vectors = features_for_patients(list(ids), feature_names, as_of)
        for pk, values in vectors.items():
            result[ids[pk]] = dict(zip(feature_names, values, strict=True))
    return result


def subject_birth_date(subject_key: str) -> date | None:
    return Patient.objects.filter(subject_key=subject_key).values_list("birth_date", flat=True).first()


def subject_is_known(subject_key: str) -> bool:
    return Patient.objects.filter(subject_key=subject_key).exists()
