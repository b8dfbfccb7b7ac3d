"""The data domain's operations used by other apps: identity, consent, encrypted features, grants.

Keyword-only, typed; they raise only :class:`datadomain.errors.DomainError` and return plain values or
dataclasses. No resident ID, name or clinical value ever appears in an error message or log line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any, Literal, TypedDict

import orjson
import phe
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, Min, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext_noop

from audit.approvals import Staff, approval_claim
from audit.models import Approval
from audit.services import Event, audit_record, audit_record_many, subject_ref
from config.celery import enqueue
from datadomain import catalog, identity, keyring, linkage
from datadomain.consent_store import consent_artifact_delete
from datadomain.encryption import Stored, encrypt_vector, from_pair, key_fingerprint, pack, to_pair, unpack
from datadomain.errors import DomainError
from datadomain.extraction import features_for_patients
from datadomain.freshness import records_stamps, stamp_sql
from datadomain.models import (
    ComparisonGrant,
    Condition,
    Consent,
    CustodianKey,
    Encounter,
    EncryptedFeatureVector,
    FeatureValues,
    Observation,
    Patient,
    QuarantinedLine,
)
from datadomain.models.consent import ConsentWithdrawal
from datadomain.models.identity import MessageDelivery, PatientContact, PatientSource, ResidentCode
from datadomain.selectors import key_retire_refusal
from securecompute.binding import BindingParams, TagMaterial, new_mac_key, tag_material, tag_material_for_known_score
from securecompute.paillier import modulus
from securecompute.scoring import encrypted_score
from securecompute.tiering import tiering_params

# --- identity --------------------------------------------------------------------------------------


def resident_id_normalise(value: str) -> str:
    """NFKC, trimmed, upper case (``x`` -> ``X``)."""
    return identity.normalise(value)


def resident_id_is_valid(value: str) -> bool:
    """GB 11643: 18 characters, a real birth date, ISO 7064 MOD 11-2 check character (after normalising)."""
    return identity.is_valid(identity.normalise(value))


def mask_resident_id(value: str) -> str:
    """``370214********123X``."""
    return identity.mask(value)


def subject_key_for(resident_id: str) -> str:
    """HMAC-SHA256(SUBJECT_PEPPER, normalised resident ID), hex."""
    return identity.subject_key(resident_id, str(settings.SUBJECT_PEPPER))


@dataclass(frozen=True)
class IdentityCheck:
    outcome: Literal["matched", "mismatch", "unknown"]
    subject_key: str
    resident_id_masked: str


def identity_check_many(*, applicants: Sequence[tuple[str, str]]) -> list[IdentityCheck | None]:
    """Does the domain know each resident ID, and under this name? One query for all the (resident ID,
    name) pairs, answers in their order; ``None`` stands for a malformed ID."""
    normalised = [identity.normalise(resident_id) for resident_id, _ in applicants]
    keys = [subject_key_for(value) if identity.is_valid(value) else None for value in normalised]
    wanted = {key for key in keys if key is not None}
    names = dict(Patient.objects.filter(subject_key__in=wanted).values_list("subject_key", "name")) if wanted else {}
    checks: list[IdentityCheck | None] = []
    for (_, name), value, key in zip(applicants, normalised, keys, strict=True):
        if key is None:
            checks.append(None)
            continue
        stored = names.get(key)
        if stored is None:
            outcome: Literal["matched", "mismatch", "unknown"] = "unknown"
        elif identity.names_match(stored, name):
            outcome = "matched"
        else:
            outcome = "mismatch"
        checks.append(IdentityCheck(outcome=outcome, subject_key=key, resident_id_masked=identity.mask(value)))
    return checks


# --- consent ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentEvidence:
    """Consent evidence as an insurer presents it (the API, a batch row, the portal's form) or as the
    bureau writes it for a resident's own confirmation; :func:`consent_record_many` stores it for a subject."""

    reference: str
    signed_at: datetime
    expires_at: datetime | None
    scope: list[str]
    artifact_sha256: str


ConsentProblem = Literal["withdrawn", "invalid"]


@dataclass(frozen=True)
class RecordedConsent:
    """A stored consent: what decides whether it covers a purpose at a given time."""

    consent_id: int
    scope: list[str]
    signed_at: datetime
    expires_at: datetime | None
    withdrawn_at: datetime | None

    @classmethod
    def of(cls, consent: Consent, *, withdrawn_at: datetime | None = None) -> RecordedConsent:
        """``withdrawn_at``: when a withdrawal stopped the consent (:func:`_consents_stopped_at`), if its
        row does not say so itself."""
        stopped = min((m for m in (consent.withdrawn_at, withdrawn_at) if m is not None), default=None)
        return cls(consent.pk, consent.scope, consent.signed_at, consent.expires_at, stopped)

    def problem(self, *, purpose: str = "underwriting", at: datetime) -> ConsentProblem | None:
        """Why the consent does not cover ``purpose`` at ``at``: ``withdrawn``, or ``invalid`` (scope, not
        yet signed, expired); None when it does."""
        if self.withdrawn_at is not None and at >= self.withdrawn_at:
            return "withdrawn"
        if purpose not in self.scope or at < self.signed_at or (self.expires_at is not None and at >= self.expires_at):
            return "invalid"
        return None

    def is_valid(self, *, purpose: str = "underwriting", at: datetime) -> bool:
        """Scope includes ``purpose``, signed at or before ``at``, not expired and not withdrawn at ``at``."""
        return self.problem(purpose=purpose, at=at) is None


class _ConsentFields(TypedDict):
    signed_at: datetime
    expires_at: datetime | None
    scope: list[str]
    artifact_sha256: str


def _consent_fields(
    *, reference: str, signed_at: datetime, expires_at: datetime | None, scope: list[str], artifact_sha256: str
) -> _ConsentFields:
    """The evidence as stored (scope sorted, digest lower case); ``invalid_input`` when it is malformed."""
    if timezone.is_naive(signed_at) or (expires_at is not None and timezone.is_naive(expires_at)):
        raise DomainError("invalid_input", "Consent times must be time-zone aware.")
    digest = artifact_sha256.lower()
    if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
        raise DomainError("invalid_input", "artifact_sha256 must be 64 hexadecimal characters.")
    if not reference or len(reference) > 200 or not all(isinstance(item, str) for item in scope):
        raise DomainError("invalid_input", "Consent reference or scope is malformed.")
    return {"signed_at": signed_at, "expires_at": expires_at, "scope": sorted(set(scope)), "artifact_sha256": digest}


def _evidence_differs(consent: Consent, fields: _ConsentFields) -> bool:
    return any(getattr(consent, name) != value for name, value in fields.items())


# Shown on the portal's form in the user's language (audit.errors.add_to_form), in English in the API.
DIFFERENT_CONSENT = gettext_noop("A different consent was already recorded under this reference.")


@transaction.atomic(savepoint=False)  # part of the caller's transaction, which retries on IntegrityError
def consent_record_many(
    *, insurer_slug: str, evidence: Sequence[tuple[str, ConsentEvidence]], audit: list[Event] | None = None
) -> list[RecordedConsent | DomainError]:
    """Store consent evidence, each item a (subject key, evidence) pair: one SELECT of the references
    already recorded, one INSERT of the new ones and one of their audit events. Each item gets its record,
    or its error: ``invalid_input`` for malformed evidence, or for a reference the insurer already used for
    the subject with other evidence (evidence is immutable once recorded). The same (subject, reference)
    again returns the existing record; items with the same pair share one record, in order, as they would
    one after the other.

    No savepoint per row: a concurrent insert of the same reference raises IntegrityError, and the caller
    retries its transaction, whose next pass finds that record and compares its evidence.

    With ``audit``, the audit events are appended to it instead, for the caller to record in its own
    INSERT in the same transaction."""
    checked = [_consent_fields_or_error(item) for _, item in evidence]
    wanted = {
        (subject, item.reference)
        for (subject, item), fields in zip(evidence, checked, strict=True)
        if isinstance(fields, dict)
    }
    records = _consents_recorded(insurer_slug, wanted)
    new: list[Consent] = []
    for (subject, item), fields in zip(evidence, checked, strict=True):
        if isinstance(fields, dict) and (subject, item.reference) not in records:
            consent = Consent(insurer_slug=insurer_slug, subject_key=subject, reference=item.reference, **fields)
            records[(subject, item.reference)] = consent
            new.append(consent)
    stopped = dict(zip(map(id, records.values()), _consents_stopped_at(list(records.values())), strict=True))
    for consent in new:  # evidence a withdrawal already stopped is recorded as withdrawn
        consent.withdrawn_at = stopped[id(consent)]
    Consent.objects.bulk_create(new)
    events = [_consent_event("consent.record", consent, scope=consent.scope) for consent in new]
    if audit is None:
        audit_record_many(events)
    else:
        audit.extend(events)
    results: list[RecordedConsent | DomainError] = []
    for (subject, item), fields in zip(evidence, checked, strict=True):
        if isinstance(fields, DomainError):
            results.append(fields)
            continue
        consent = records[(subject, item.reference)]
        if _evidence_differs(consent, fields):
            results.append(DomainError("invalid_input", DIFFERENT_CONSENT, fields={"reference": [DIFFERENT_CONSENT]}))
        else:
            results.append(RecordedConsent.of(consent, withdrawn_at=stopped[id(consent)]))
    return results


def _consent_fields_or_error(item: ConsentEvidence) -> _ConsentFields | DomainError:
    try:
        return _consent_fields(
            reference=item.reference, signed_at=item.signed_at, expires_at=item.expires_at, scope=item.scope,
            artifact_sha256=item.artifact_sha256,
        )  # fmt: skip
    except DomainError as exc:
        return exc


def _consents_recorded(insurer_slug: str, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], Consent]:
    """The records already stored for these (subject, reference) pairs, in one query."""
    if not wanted:
        return {}
    rows = Consent.objects.filter(
        insurer_slug=insurer_slug,
        subject_key__in={subject for subject, _ in wanted},
        reference__in={reference for _, reference in wanted},
    )
    return {(row.subject_key, row.reference): row for row in rows if (row.subject_key, row.reference) in wanted}


def _consent_event(action: str, consent: Consent, *, by: str = "", **detail: object) -> Event:
    return Event(
        action,
        by or f"insurer:{consent.insurer_slug}",
        "consent",
        str(consent.pk),
        # Not the insurer's free-text reference: the consent id names the evidence without risking what an
        # insurer may have typed into it.
        {"subject": subject_ref(consent.subject_key), **detail},
    )


def _audit_consent(action: str, consent: Consent, *, by: str = "", **detail: object) -> None:
    audit_record_many([_consent_event(action, consent, by=by, **detail)])


def consent_problems(
    *, consent_ids: Sequence[int], purpose: str = "underwriting", at: datetime
) -> dict[int, ConsentProblem]:
    """Why each consent that does not cover ``purpose`` at ``at`` does not (``withdrawn`` or ``invalid``;
    see :meth:`RecordedConsent.problem`, withdrawals included as :func:`_consents_stopped_at` finds them),
    in a few queries for all of them. Consents that cover it are left out, and so are consents no longer
    stored (their subject was erased: the caller finds no records either). One query when no
    withdrawal concerns them (whether one does is read with the consents)."""
    withdrawals = ConsentWithdrawal.objects.filter(
        Q(insurer_slug="") | Q(insurer_slug=OuterRef("insurer_slug")), subject_key=OuterRef("subject_key")
    )
    consents = list(Consent.objects.filter(pk__in=set(consent_ids)).annotate(withdrawals=Exists(withdrawals)))
    concerned = [consent for consent in consents if consent.withdrawals]
    stops = dict(zip(map(id, concerned), _consents_stopped_at(concerned), strict=True)) if concerned else {}
    problems: dict[int, ConsentProblem] = {}
    for consent in consents:
        stopped = stops.get(id(consent), consent.withdrawn_at)
        problem = RecordedConsent.of(consent, withdrawn_at=stopped).problem(purpose=purpose, at=at)
        if problem is not None:
            problems[consent.pk] = problem
    return problems


def _consents_stopped_at(consents: Sequence[Consent]) -> list[datetime | None]:
    """When each consent stops counting, in order: its own withdrawal, or the earliest withdrawal for its
    subject and insurer (or for every insurer) that it was signed before. One query, and a second one
    only when the subjects have withdrawals.

    "Signed before" is judged on the evidence, not only on the date the insurer claims: a form cannot have
    been signed later than the bureau first held the same form (same SHA-256, same subject) or than any
    date claimed for it, so an old form presented again under a new reference with a later date is still
    stopped by a withdrawal it predates."""
    subjects = {consent.subject_key for consent in consents}
    insurers = {"", *(consent.insurer_slug for consent in consents)}
    withdrawals: dict[str, list[ConsentWithdrawal]] = {}
    if subjects:
        for row in ConsentWithdrawal.objects.filter(subject_key__in=subjects, insurer_slug__in=insurers):
            withdrawals.setdefault(row.subject_key, []).append(row)
    held = _forms_first_held([c for c in consents if c.subject_key in withdrawals]) if withdrawals else {}
    now = timezone.now()
    stops: list[datetime | None] = []
    for consent in consents:
        signed_by = min(
            consent.signed_at, consent.created_at or now, held.get((consent.subject_key, consent.artifact_sha256), now)
        )
        moments = [
            withdrawal.withdrawn_at
            for withdrawal in withdrawals.get(consent.subject_key, [])
            if withdrawal.insurer_slug in ("", consent.insurer_slug) and signed_by <= withdrawal.withdrawn_at
        ]
        if consent.withdrawn_at is not None:
            moments.append(consent.withdrawn_at)
        stops.append(min(moments, default=None))
    return stops


def _forms_first_held(consents: Sequence[Consent]) -> dict[tuple[str, str], datetime]:
    """For each (subject, form SHA-256) of ``consents``: the earliest date claimed for that form or the
    first time the bureau recorded it, for any insurer, whichever is earlier."""
    if not consents:
        return {}
    rows = (
        Consent.objects.filter(
            subject_key__in={c.subject_key for c in consents}, artifact_sha256__in={c.artifact_sha256 for c in consents}
        )
        .values("subject_key", "artifact_sha256")
        .annotate(signed=Min("signed_at"), recorded=Min("created_at"))
        .order_by()
    )
    return {(row["subject_key"], row["artifact_sha256"]): min(row["signed"], row["recorded"]) for row in rows}


def consent_withdraw(*, consent_id: int, at: datetime | None = None, by: str = "") -> None:
    """Withdraw a consent from ``at`` (default now), which withdraws it for its subject and insurer: every
    consent of theirs signed before, under any reference, stops then (:func:`consent_withdrawal_record`).
    A consent already withdrawn stays as it was (the first withdrawal stands). ``by``: the staff member."""
    moment = at or timezone.now()
    consent = Consent.objects.filter(pk=consent_id).first()
    if consent is None:
        raise DomainError("not_found", "No such consent.")
    if consent.withdrawn_at is None:
        consent_withdrawal_record(subject_key=consent.subject_key, insurer_slug=consent.insurer_slug, at=moment, by=by)


def subject_consents_withdraw(*, subject_key: str, by: str) -> int:
    """Withdraw the subject's consent for every insurer from now (PIPL Art. 15): every consent signed
    before, recorded or presented later, stops. Returns how many recorded consents it stopped."""
    return len(consent_withdrawal_record(subject_key=subject_key, insurer_slug="", at=timezone.now(), by=by))


@transaction.atomic
def consent_withdrawal_record(*, subject_key: str, insurer_slug: str, at: datetime, by: str = "") -> list[int]:
    """Record a withdrawal of the subject's consent for one insurer (``insurer_slug`` empty: for every
    insurer) from ``at``, and mark the consents it stops as withdrawn; returns their ids. Consents
    presented later are checked against the withdrawal when they are recorded."""
    withdrawal = ConsentWithdrawal.objects.create(
        subject_key=subject_key, insurer_slug=insurer_slug, withdrawn_at=at, recorded_by=by[:150]
    )
    open_rows = Consent.objects.filter(subject_key=subject_key, withdrawn_at__isnull=True)
    if insurer_slug:
        open_rows = open_rows.filter(insurer_slug=insurer_slug)
    rows = list(open_rows.order_by("id"))
    stopped = []
    for consent, moment in zip(rows, _consents_stopped_at(rows), strict=True):
        if moment is not None and Consent.objects.filter(pk=consent.pk, withdrawn_at__isnull=True).update(
            withdrawn_at=moment
        ):
            _audit_consent("consent.withdraw", consent, by=by, withdrawn_at=moment.isoformat())
            stopped.append(consent.pk)
    audit_record(
        action="consent.withdrawal",
        actor=by,
        target_type="consent_withdrawal",
        target_id=str(withdrawal.pk),
        detail={
            "subject": subject_ref(subject_key), "insurer": insurer_slug or "*", "withdrawn_at": at.isoformat(),
            "consents_stopped": len(stopped),
        },
    )  # fmt: skip
    return stopped


# --- erasure ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Erasure:
    """What an erasure removed, by count only."""

    identity: int
    vectors: int
    conditions: int
    encounters: int
    observations: int
    quarantined_lines: int
    consents_withdrawn: int
    consent_forms: int
    # The resident page's rows: the phone number held, sign-in codes and message outcomes.
    resident_contact: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@transaction.atomic
def subject_erase(*, resident_id: str, by: str, detail: dict[str, int] | None = None) -> Erasure:
    """Erase one subject on request (PIPL Art. 47): encrypted vectors, clinical records, quarantined input
    lines that name them, stored consent forms, the identity row (resident ID, name, birth date) and the
    resident page's rows (phone number, sign-in codes, message outcomes) go;
    consents are withdrawn and kept as pseudonymous evidence of past lawful processing. The audit event
    names the subject by the first digits of its pseudonymous key only. ``detail``: counts the caller
    adds to the event (e.g. requests anonymised by underwriting)."""
    normalised = identity.normalise(resident_id)
    if not identity.is_valid(normalised):
        raise DomainError("invalid_input", "The resident ID is not a valid 18-character GB 11643 number.")
    key = subject_key_for(normalised)
    withdrawn = subject_consents_withdraw(subject_key=key, by=by)
    digests = set(Consent.objects.filter(subject_key=key).values_list("artifact_sha256", flat=True))
    shared = set(
        Consent.objects.filter(artifact_sha256__in=digests)
        .exclude(subject_key=key)
        .values_list("artifact_sha256", flat=True)
    )
    forms = sum(consent_artifact_delete(digest=digest) for digest in digests - shared)
    contact = sum(model.objects.filter(subject_key=key).delete()[0] for model in (ResidentCode, MessageDelivery))
    patient = Patient.objects.filter(subject_key=key).values_list("pk", "resource_id").first()
    counts = {"vectors": 0, "conditions": 0, "encounters": 0, "observations": 0, "identity": 0}
    lines = QuarantinedLine.objects.filter(raw_line__contains=normalised)
    if patient is not None:
        patient_id, resource_id = patient
        lines = lines | QuarantinedLine.objects.filter(raw_line__contains=f"Patient/{resource_id}")
        for name, model in (("conditions", Condition), ("encounters", Encounter), ("observations", Observation)):
            counts[name] = model.objects.filter(patient_id=patient_id).delete()[0]
        counts["vectors"] = EncryptedFeatureVector.objects.filter(patient_id=patient_id).delete()[0]
        contact += PatientContact.objects.filter(patient_id=patient_id).delete()[0]  # by patient: web reads no more
        counts["identity"] = Patient.objects.filter(pk=patient_id).delete()[1].get(Patient._meta.label, 0)
    erasure = Erasure(
        quarantined_lines=lines.delete()[0],
        consents_withdrawn=withdrawn,
        consent_forms=forms,
        resident_contact=contact,
        **counts,
    )
    audit_record(
        action="subject.erase",
        actor=by,
        target_type="subject",
        target_id=subject_ref(key),
        detail={**erasure.as_dict(), **(detail or {})},
    )
    return erasure


# --- encrypted features ----------------------------------------------------------------------------


def encrypted_feature_vectors(
    *, subject_keys: Sequence[str], feature_names: Sequence[str], as_of: date, public_key: phe.PaillierPublicKey
) -> dict[str, list[phe.EncryptedNumber]]:
    """Ciphertexts of ``feature_names`` for each known subject, in that order; unknown subjects are left out
    (see :func:`subject_vectors`)."""
    vectors = subject_vectors(
        subject_keys=subject_keys, feature_names=feature_names, as_of=as_of, public_key=public_key
    )
    return {subject_key: vector.ciphertexts for subject_key, vector in vectors.items()}


@dataclass(frozen=True)
class SubjectVector:
    """One subject's features as ciphertexts and, when the domain still holds the plaintexts those were
    made from (``FeatureValues`` at the same records stamp), as integers, both in the manual's order."""

    ciphertexts: list[phe.EncryptedNumber]
    values: list[int] | None


def subject_vectors(
    *, subject_keys: Sequence[str], feature_names: Sequence[str], as_of: date, public_key: phe.PaillierPublicKey
) -> dict[str, SubjectVector]:
    """The vectors of ``feature_names`` for each known subject; unknown subjects are left out.

    Set-based: when the store holds a fresh vector for each (subject, catalog version, key, as-of date),
    one statement for the whole list on PostgreSQL (subjects, whether any may be held, records stamps,
    stored vectors and their plaintext values; see :func:`_stored_state`), four queries elsewhere;
    subjects whose vector is missing or stale have their features extracted together, encrypted and
    stored, with their values.
    """
    _check_feature_names(feature_names)
    state = _stored_state(subject_keys, catalog.current().version, key_fingerprint(public_key), as_of)
    return _vectors(state, feature_names, as_of, public_key)


# The active key as this process last read it (key id, public key): see subject_vectors_active.
_active_key: tuple[str, phe.PaillierPublicKey] | None = None


def subject_vectors_active(
    *, subject_keys: Sequence[str], feature_names: Sequence[str], as_of: date
) -> tuple[str, phe.PaillierPublicKey, dict[str, SubjectVector]]:
    """:func:`subject_vectors` under the active key: (key id, public key, vectors).

    The process remembers the active key (``keyring.active_public_key``, pinning checked), and on
    PostgreSQL the vectors' statement reads which key is active now: a rotation or retirement since is
    seen in that same statement, and the key is read again before anything is encrypted under the old
    one. Elsewhere the key is read each time."""
    global _active_key
    _check_feature_names(feature_names)
    version = catalog.current().version
    if connection.vendor != "postgresql":
        key_id, public_key = keyring.active_public_key()
        state = _stored_state(subject_keys, version, key_fingerprint(public_key), as_of)
        return key_id, public_key, _vectors(state, feature_names, as_of, public_key)
    for attempt in range(2):
        if _active_key is None or attempt:
            _active_key = keyring.active_public_key()
        key_id, public_key = _active_key
        state = _stored_state(subject_keys, version, key_fingerprint(public_key), as_of)
        if state.active_key == key_id:
            return key_id, public_key, _vectors(state, feature_names, as_of, public_key)
    _active_key = None
    raise DomainError("no_active_key", "The active custodian key changed while it was read; try again.")


def _check_feature_names(feature_names: Sequence[str]) -> None:
    unknown = sorted(set(feature_names) - set(catalog.current().features))
    if unknown:
        raise DomainError("invalid_input", f"Unknown catalog features: {', '.join(unknown)}.")


@dataclass(frozen=True)
class _StoredState:
    """What the store holds for some subjects: their patients (held ones left out), records stamps, the
    vectors and plaintext values stored at those stamps, and the active key's id (PostgreSQL only)."""

    patients: dict[str, int]
    stamps: dict[int, int]
    vectors: dict[int, Stored]
    values: dict[int, dict[str, int]]
    active_key: str | None = None


def _stored_state(subject_keys: Sequence[str], version: str, key_id: str, as_of: date) -> _StoredState:
    if connection.vendor == "postgresql":
        return _stored_state_statement(subject_keys, version, key_id, as_of)
    if not subject_keys:
        return _StoredState({}, {}, {}, {})
    patients = dict(Patient.objects.filter(subject_key__in=list(subject_keys)).values_list("subject_key", "pk"))
    # Incompletely or doubtfully linked records (datadomain.linkage) are never answered: no vector.
    on_hold = linkage.held(patients.values())
    patients = {key: pk for key, pk in patients.items() if pk not in on_hold}
    if not patients:
        return _StoredState({}, {}, {}, {})
    stamps = records_stamps(list(patients.values()))
    lookup = {"catalog_version": version, "key_id": key_id, "as_of": as_of}
    rows = EncryptedFeatureVector.objects.filter(patient_id__in=list(patients.values()), **lookup).values_list(
        "patient_id", "records_stamp", "features", "exponents", "ciphertexts"
    )
    vectors: dict[int, Stored] = {
        patient_id: unpack(names, exponents, bytes(blob))
        for patient_id, stamp, names, exponents, blob in rows
        if stamp == stamps.get(patient_id)
    }
    return _StoredState(patients, stamps, vectors, _fresh_values(stamps, version, as_of))


@cache
def _state_sql() -> str:
    """One row per patient of the subjects: its id, records stamp, whether it may be held (another
    linked source, or open ``dangling_subject`` lines naming one of its sources: ``linkage.held`` then
    decides), the stored vector and plaintext values for the lookup (if any), and the active key's id;
    one row of NULLs but the key's when no subject is known."""
    tables = {
        name: model._meta.db_table
        for name, model in (
            ("patient", Patient), ("source", PatientSource), ("line", QuarantinedLine),
            ("vector", EncryptedFeatureVector), ("values", FeatureValues), ("key", CustodianKey),
        )
    }  # fmt: skip
    return (
        f"SELECT p.subject_key, p.id, {stamp_sql('p')},"  # noqa: S608 # nosec B608 - names from the models, values bound
        f" EXISTS (SELECT 1 FROM {tables['source']} s WHERE s.patient_id = p.id AND (s.resource_id <> p.resource_id"
        f" OR EXISTS (SELECT 1 FROM {tables['line']} q WHERE q.reason_code = 'dangling_subject'"
        " AND q.resolved_at IS NULL AND q.subject_ref = s.resource_id))),"
        ' v.records_stamp, v.features, v.exponents, v.ciphertexts, f.records_stamp, f."values",'
        " k.key_id"
        f" FROM (SELECT (SELECT key_id FROM {tables['key']} WHERE status = %s ORDER BY created_at DESC LIMIT 1)"
        f" AS key_id) k LEFT JOIN {tables['patient']} p ON p.subject_key = ANY(%s)"
        f" LEFT JOIN {tables['vector']} v ON v.patient_id = p.id AND v.catalog_version = %s AND v.key_id = %s"
        " AND v.as_of = %s"
        f" LEFT JOIN {tables['values']} f ON f.patient_id = p.id AND f.catalog_version = %s AND f.as_of = %s"
    )


def _stored_state_statement(subject_keys: Sequence[str], version: str, key_id: str, as_of: date) -> _StoredState:
    params: list[Any] = [CustodianKey.Status.ACTIVE.value, list(subject_keys), version, key_id, as_of, version, as_of]
    with connection.cursor() as cursor:
        cursor.execute(_state_sql(), params)
        rows = cursor.fetchall()
    maybe_held = [row[1] for row in rows if row[1] is not None and row[3]]
    on_hold = linkage.held(maybe_held) if maybe_held else set()
    patients: dict[str, int] = {}
    stamps: dict[int, int] = {}
    vectors: dict[int, Stored] = {}
    values: dict[int, dict[str, int]] = {}
    active_key = None
    for subject_key, pk, stamp, _, vector_stamp, names, exponents, blob, values_stamp, plain, active in rows:
        active_key = active
        if pk is None or pk in on_hold:  # incompletely or doubtfully linked records (datadomain.linkage): no vector
            continue
        patients[subject_key], stamps[pk] = pk, int(stamp)
        if vector_stamp == stamps[pk]:
            vectors[pk] = unpack(_json(names), _json(exponents), bytes(blob))
        if values_stamp == stamps[pk]:
            values[pk] = dict(_json(plain))
    return _StoredState(patients, stamps, vectors, values, active_key)


def _json(value: Any) -> Any:
    """A JSON column as a raw cursor returns it (text with psycopg2 under Django), parsed."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _vectors(
    state: _StoredState, feature_names: Sequence[str], as_of: date, public_key: phe.PaillierPublicKey
) -> dict[str, SubjectVector]:
    """The stored state made whole: vectors missing or stale (or lacking some of ``feature_names``) are
    extracted together, encrypted and stored with their values (rare in steady state: vectors are
    precomputed)."""
    patients, stamps, stored, plain = state.patients, state.stamps, state.vectors, dict(state.values)
    if not patients:
        return {}
    version, key_id = catalog.current().version, key_fingerprint(public_key)
    current = {pk: stored.get(pk, {}) for pk in patients.values()}
    stale: dict[tuple[str, ...], list[int]] = {}
    for pk, vector in current.items():
        missing = tuple(name for name in feature_names if name not in vector)
        if missing:
            stale.setdefault(missing, []).append(pk)
    for missing, patient_ids in stale.items():
        values = features_for_patients(patient_ids, list(missing), as_of)
        for pk in patient_ids:
            current[pk].update(zip(missing, map(to_pair, encrypt_vector(public_key, values[pk])), strict=True))
            computed = dict(zip(missing, map(int, values[pk]), strict=True))
            plain[pk] = {**plain.get(pk, {}), **computed} if pk in stored else computed
            vector_save(
                patient_id=pk, catalog_version=version, key_id=key_id, as_of=as_of,
                records_stamp=stamps[pk], ciphertexts=current[pk], values=plain[pk],
            )  # fmt: skip
    return {
        subject_key: SubjectVector(
            [from_pair(public_key, current[pk][name]) for name in feature_names],
            _in_order(plain.get(pk, {}), feature_names),
        )
        for subject_key, pk in patients.items()
    }


def _fresh_values(stamps: dict[int, int], catalog_version: str, as_of: date) -> dict[int, dict[str, int]]:
    """The plaintext values stored for these patients at their current records stamps."""
    rows = FeatureValues.objects.filter(
        patient_id__in=list(stamps), catalog_version=catalog_version, as_of=as_of
    ).values_list("patient_id", "records_stamp", "values")
    return {patient_id: dict(values) for patient_id, stamp, values in rows if stamp == stamps.get(patient_id)}


def _in_order(values: dict[str, int], feature_names: Sequence[str]) -> list[int] | None:
    if any(name not in values for name in feature_names):
        return None
    return [int(values[name]) for name in feature_names]


def vector_save(
    *,
    patient_id: int,
    catalog_version: str,
    key_id: str,
    as_of: date,
    records_stamp: int,
    ciphertexts: Stored,
    values: dict[str, int],
) -> None:
    """Store ciphertexts computed from the records state ``records_stamp`` and the plaintext ``values``
    they were made from (in the same transaction: the two never disagree at one stamp).

    The stamp is read before the features are computed, so a change committed meanwhile leaves the
    row stale (recomputed next time) rather than wrongly fresh."""
    lookup = {"patient_id": patient_id, "catalog_version": catalog_version, "key_id": key_id, "as_of": as_of}
    names, exponents, blob = pack(ciphertexts)
    defaults = {"records_stamp": records_stamp, "features": names, "exponents": exponents, "ciphertexts": blob}
    with transaction.atomic():
        try:
            with transaction.atomic():
                EncryptedFeatureVector.objects.update_or_create(**lookup, defaults=defaults)  # type: ignore[arg-type]
        except IntegrityError:  # another worker created the row first: both computed the same state
            EncryptedFeatureVector.objects.filter(**lookup).update(**defaults)
        values_save(
            patient_id=patient_id,
            catalog_version=catalog_version,
            as_of=as_of,
            records_stamp=records_stamp,
            values=values,
        )


def values_save(
    *, patient_id: int, catalog_version: str, as_of: date, records_stamp: int, values: dict[str, int]
) -> None:
    """Upsert one subject's plaintext feature values (one statement: concurrent writers of the same
    records state write the same values)."""
    FeatureValues.objects.bulk_create(
        [FeatureValues(patient_id=patient_id, catalog_version=catalog_version, as_of=as_of,
                       records_stamp=records_stamp, values=values)],
        update_conflicts=True, unique_fields=["patient", "catalog_version", "as_of"],
        update_fields=["records_stamp", "values", "computed_at"],
    )  # fmt: skip


# --- custodian bookkeeping -------------------------------------------------------------------------


@dataclass(frozen=True)
class GrantRequest:
    """One request to authorise: its subject's encrypted features (in the manual's order) and the manual's
    weights, thresholds and score bound."""

    request_ref: str
    features: Sequence[phe.EncryptedNumber]
    weights: Sequence[int]
    thresholds: Sequence[int]
    score_bound: int
    # The plaintexts of ``features`` when the domain holds them (``SubjectVector.values``): the tag
    # material is then a fresh encryption of a known value instead of a power of the encrypted score.
    values: Sequence[int] | None = None


@dataclass(frozen=True)
class IssuedGrant:
    """What the scoring worker gets for an authorised request: the packing it must use, the tag
    material and when the grant expires. The MAC key itself stays in the grant."""

    slot_bits: int
    tags: TagMaterial
    expires_at: datetime


def comparison_grants_issue(
    *, requests: Sequence[GrantRequest], key_id: str, public_key: phe.PaillierPublicKey
) -> dict[str, IssuedGrant]:
    """Authorise one comparison query per request (securecompute.binding): derive the request's score
    here, in the domain, from its subject's vector and the manual's weights (in the clear when the
    domain holds the vector's plaintext values, else under encryption), draw a fresh MAC key, store it
    with the grant's terms for the custodian and return the tag material for the worker. One INSERT for
    the lot; a request can be authorised once (a second grant for it is an error)."""
    bits = modulus(public_key).bit_length()
    expires_at = timezone.now() + timedelta(seconds=int(settings.UNDERWRITING_GRANT_SECONDS))
    grants, issued = [], {}
    for item in requests:
        params = tiering_params(bits, item.thresholds, score_bound=item.score_bound)
        mac_key = new_mac_key(params)
        issued[item.request_ref] = IssuedGrant(params.slot_bits, _tags(public_key, item, mac_key, params), expires_at)
        grants.append(
            ComparisonGrant(
                request_ref=item.request_ref, key_id=key_id, comparisons=params.comparisons,
                slot_bits=params.slot_bits, mac_key=format(mac_key, "x"), expires_at=expires_at,
            )
        )  # fmt: skip
    ComparisonGrant.objects.bulk_create(grants)
    return issued


def _tags(public_key: phe.PaillierPublicKey, item: GrantRequest, mac_key: int, params: BindingParams) -> TagMaterial:
    if item.values is not None:
        if len(item.values) != len(item.weights):
            raise DomainError("invalid_input", "The feature values do not match the manual's weights.")
        score = sum(weight * value for weight, value in zip(item.weights, item.values, strict=True))
        return tag_material_for_known_score(public_key, score, mac_key, params)
    return tag_material(public_key, encrypted_score(public_key, item.features, item.weights), mac_key, params)


def vectors_drop_retiring() -> int:
    """Delete stored vectors under retiring keys, once they have been re-encrypted under the active key
    (``precompute_features --replace-retiring``). Runs in the data domain: the custodian never touches
    the feature store."""
    retiring = list(CustodianKey.objects.filter(status=CustodianKey.Status.RETIRING).values_list("key_id", flat=True))
    deleted, _ = EncryptedFeatureVector.objects.filter(key_id__in=retiring).delete()
    audit_record(action="domain.vectors_drop", detail={"keys": retiring, "deleted": deleted})
    return deleted


def keypair_rotate_request(*, actor: str, approval_id: int | None = None) -> None:
    """Ask the custodian for a new active key. Only the custodian holds the key directory and KEK, so the
    rotation runs on its queue; the task is sent by name so that this process never imports the custodian."""
    _custodian_task("rotate_keypair", actor, approval_id)


def _custodian_task(name: str, *args: object) -> None:
    """Send a custodian task by name; no other work retries it, so a broker that cannot take it is an
    error the staff member sees, as before anything was recorded as sent."""
    if not enqueue(f"datadomain.custodian.{name}", *args, what=f"custodian {name}"):
        raise DomainError("broker_unavailable", "The custodian's queue cannot be reached now; try again later.")


def key_rotation_execute(*, approval_id: int, executed_by: Staff) -> None:
    """Carry out an approved four-eyes rotation once: the approval is claimed now and the custodian is
    asked for the new key when this transaction commits. ``ApprovalError`` when it is not approved
    or was carried out already."""
    with transaction.atomic():
        approval_claim(approval_id=approval_id, kind=Approval.Kind.KEY_ROTATION, executed_by=executed_by)
        actor = executed_by.get_username()
        transaction.on_commit(lambda: keypair_rotate_request(actor=actor, approval_id=approval_id))


def key_retire_request(*, key_id: str, actor: str) -> None:
    """Ask the custodian to retire an old key (and delete its sealed private key). Refused here, with the
    reason, while the key is active or any stored ciphertext still uses it; the custodian checks again."""
    refusal = key_retire_refusal(key_id)
    if refusal is not None:
        raise refusal
    _custodian_task("retire_key", key_id, actor)


# --- quarantine ------------------------------------------------------------------------------------


@transaction.atomic
def quarantine_reprocess(*, quarantined_id: int) -> bool:
    """Ingest a quarantined line again (after a fix in the admin). True when it was ingested; otherwise
    the line stays quarantined with the new reason."""
    from datadomain.ingest.runner import Ingester, parse_batch  # the ingest machinery is only needed here

    line = QuarantinedLine.objects.select_for_update().filter(pk=quarantined_id).first()
    if line is None:
        raise DomainError("not_found", "No such quarantined line.")
    if line.resolved_at is not None:
        return True
    ingester = Ingester()
    lines = [(line.line_number, line.raw_line.encode("utf-8"))]
    parsed = parse_batch(ingester.parser, line.source_path, lines, line.line_number, copy=False)
    rejects = ingester.write(parsed)
    if rejects:
        line.reason_code, line.reason, line.subject_ref = rejects[0].code, rejects[0].reason, rejects[0].subject_ref
        line.save(update_fields=["reason_code", "reason", "subject_ref"])
        return False
    line.resolved_at = timezone.now()
    line.save(update_fields=["resolved_at"])
    if "Patient" in parsed.tables:  # the records held for this Patient now count
        ingester.release_held()
    return True
