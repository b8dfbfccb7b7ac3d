"""Reads of the data domain for other apps. Everything returned is a plain value or dataclass,
never a model instance (underwriting and insurer_portal may not import ``datadomain.models``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import Count
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from datadomain import catalog, linkage
from datadomain.errors import DomainError
from datadomain.extraction import features_for_patients
from datadomain.models import Consent, CustodianKey, EncryptedFeatureVector, Patient

BULK_CHUNK = 500


def catalog_feature_names() -> list[str]:
    """Every feature the catalog defines, in catalog order (see ``datadomain/catalog/*.yaml``)."""
    return catalog.current().names()


def catalog_feature_labels() -> dict[str, str]:
    """Feature name -> its label from the catalog, in the active language where the catalogue translates it
    (``datadomain/catalog/labels.py`` keeps the labels in the message catalogue)."""
    return {name: _(feature.label) for name, feature in catalog.current().features.items()}


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


def subjects_held(*, subject_keys: Sequence[str]) -> set[str]:
    """The known subjects among ``subject_keys`` whose records are incompletely or doubtfully linked
    (``datadomain.linkage.held``): they get no feature vector until bureau staff resolve the link or the
    held records are re-read."""
    patients = dict(Patient.objects.filter(subject_key__in=list(subject_keys)).values_list("pk", "subject_key"))
    return {patients[pk] for pk in linkage.held(patients)} if patients else set()


# --- custodian keys --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRow:
    key_id: str
    status: str
    created_at: datetime
    vectors: int

    @property
    def status_label(self) -> str:
        return str(CustodianKey.Status(self.status).label)


@dataclass(frozen=True)
class ReencryptionProgress:
    """How many stored encrypted vectors use the active key, and how many still use an older one."""

    active_key_id: str | None
    on_active: int
    on_old: int
    keys: list[KeyRow]

    @property
    def percent_done(self) -> int:
        total = self.on_active + self.on_old
        return 100 if total == 0 else (100 * self.on_active) // total


def key_retire_refusal(key_id: str) -> DomainError | None:
    """Why ``key_id`` may not be retired now, or None: only a ``retiring`` key that no stored ciphertext
    uses may go. The admin checks before asking the custodian, and the custodian checks again."""
    key = CustodianKey.objects.filter(key_id=key_id).first()
    if key is None:
        return DomainError("not_found", _("No such custodian key."))
    if key.status == CustodianKey.Status.ACTIVE:
        return DomainError("key_active", _("The active key cannot be retired: rotate to a new key first."))
    if key.status == CustodianKey.Status.RETIRED:
        return DomainError("key_retired", _("This key is already retired."))
    in_use = EncryptedFeatureVector.objects.filter(key_id=key_id).count()
    if in_use:
        message = ngettext(
            "%(count)d encrypted feature vector still uses this key: re-encrypt it under the active key first.",
            "%(count)d encrypted feature vectors still use this key: re-encrypt them under the active key first.",
            in_use,
        )
        return DomainError("key_in_use", message % {"count": in_use})
    return None


def vectors_per_key() -> dict[str, int]:
    """Stored encrypted vectors per key id (one grouped count over the store)."""
    rows = EncryptedFeatureVector.objects.values("key_id").annotate(n=Count("id")).order_by()
    return {row["key_id"]: row["n"] for row in rows}


def reencryption_progress() -> ReencryptionProgress:
    counts = vectors_per_key()
    keys = [
        KeyRow(key_id=key_id, status=status, created_at=created_at, vectors=counts.get(key_id, 0))
        for key_id, status, created_at in CustodianKey.objects.order_by("-created_at").values_list(
            "key_id", "status", "created_at"
        )
    ]
    active = next((key.key_id for key in keys if key.status == CustodianKey.Status.ACTIVE), None)
    on_active = counts.get(active, 0) if active else 0
    return ReencryptionProgress(
        active_key_id=active, on_active=on_active, on_old=sum(counts.values()) - on_active, keys=keys
    )


# --- subjects --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentRow:
    consent_id: int
    insurer_slug: str
    signed_at: datetime
    expires_at: datetime | None
    withdrawn_at: datetime | None
    scope: list[str]


def subject_consents(subject_key: str) -> list[ConsentRow]:
    """Every consent recorded for a subject, oldest first (the insurer's reference is left out: it is
    the insurer's free text)."""
    rows = Consent.objects.filter(subject_key=subject_key).order_by("signed_at", "id")
    return [
        ConsentRow(
            consent_id=row.pk,
            insurer_slug=row.insurer_slug,
            signed_at=row.signed_at,
            expires_at=row.expires_at,
            withdrawn_at=row.withdrawn_at,
            scope=list(row.scope),
        )
        for row in rows
    ]
