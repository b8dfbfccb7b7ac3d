"""Submitting underwriting requests: accepted, verified in the data domain and queued, a chunk at a time.

Submission is set-based so that a batch of thousands costs a few queries per chunk, not per request:
the lock on the chunk's subjects (one upsert), one lookup of the idempotency keys already used, one of
the manuals, one rate-limit count, one of identities, two of consent records and withdrawals (and one
insert of new records), then one insert each of requests, their events, verification failures and audit
entries. A request is created directly in its status after verification (``extracting``, or
``rejected`` with a reason), with the same timeline of events and audit entries as if it had moved there
one transition at a time.

What an insurer can learn from submitting (DESIGN.md, "Parties"): nothing about a person before valid
consent is established. An unknown resident ID, a name that does not match it and consent that does not
cover the request are one answer, ``not_verified``, given at the same point of the same code path (bureau
staff see which check failed in ``VerificationFailure`` and the audit trail). The rate limits are checked
before identity and count every request they let through, whatever became of it, so a refused guess uses
up the limits like an answered request, and being rate limited depends on no one's identity. They are
enforced under a lock per subject (``AdmissionLock``), so concurrent submissions cannot all pass a count
that none of them has yet added to.

How consent is proved is the bureau's choice per insurer (``ConsentPolicy``, default
UNDERWRITING_CONSENT_MODE): ``declared`` takes the insurer's evidence as given; ``form`` also needs the
signed form in the bureau's consent store (its SHA-256 must name a stored file); ``resident`` ignores the
insurer's claim and waits for the resident (``awaiting_consent``). In resident mode every request the
limits let through waits, whatever identity found, so the insurer sees the same ``awaiting_consent`` for
an unknown ID, a wrong name and a real person; only a matched identity is ever put to the resident, and the
others simply expire like a request the resident left unanswered (docs/privacy.md, section 7).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_noop

from audit.services import Event, audit_record_many, subject_ref
from datadomain import residents as domain_residents
from datadomain import services as domain
from datadomain.consent_store import consent_artifact_exists
from datadomain.errors import DomainError
from datadomain.services import ConsentEvidence as ConsentEvidence  # the submission input's consent part
from underwriting import selectors
from underwriting.errors import UnderwritingError
from underwriting.models import (
    AdmissionLock,
    ConsentConfirmation,
    ConsentMode,
    ConsentPolicy,
    RatingManual,
    RejectReason,
    RequestEvent,
    RequestStatus,
    UnderwritingRequest,
    VerificationFailure,
)
from underwriting.selectors import LARGE_REQUEST_FIELDS
from underwriting.services.dispatch import stage_wake_on_commit
from underwriting.services.overrides import override_use
from underwriting.services.webhooks import webhooks_enqueue_for_requests

# Items verified and written in one transaction. Larger chunks cost fewer queries per request but hold
# their locks (new consent references, idempotency keys) longer.
SUBMIT_CHUNK = 200
# A chunk that loses a race on an idempotency key or a consent reference is run again, this many times
# at most: each pass finds the rows the other submission committed.
SUBMIT_ATTEMPTS = 3


@dataclass(frozen=True)
class Applicant:
    resident_id: str
    name: str


@dataclass(frozen=True)
class SubmitItem:
    """One request to submit, as the API, the portal or a batch row gives it; built by :func:`submit_item`."""

    reference: str
    applicant: Applicant
    manual_slug: str
    consent: ConsentEvidence
    idempotency_key: str = ""
    body_sha256: str = ""


@dataclass(frozen=True)
class SubmitOutcome:
    """What became of one item: its request (``created`` False for a replay) or the error refusing it."""

    request: UnderwritingRequest | None = None
    created: bool = False
    error: UnderwritingError | None = None


def body_fingerprint(body: dict[str, Any]) -> str:
    """A stable hash of a request body, to tell a replay (same key, same body) from a conflict."""
    try:
        encoded = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # e.g. an integer past 64 bits in a field the API ignores
        encoded = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


def submit_item(
    *,
    reference: str,
    applicant: Applicant,
    manual_slug: str,
    consent: ConsentEvidence,
    idempotency_key: str = "",
    sent: Mapping[str, Any] | None = None,
) -> SubmitItem:
    """The one way to build a :class:`SubmitItem`, for the API, a batch row and the portal's form alike.

    ``sent`` is what the insurer sent for this item, as sent (a JSON body, a file's row, the form's fields);
    its :func:`body_fingerprint` tells a replay (same idempotency key, same input) from a conflict (same
    key, other input). Without it the item has no fingerprint, which only an item without a key may lack."""
    fingerprint = body_fingerprint(dict(sent)) if sent is not None else ""
    return SubmitItem(reference, applicant, manual_slug, consent, idempotency_key, fingerprint)


def request_date(now: datetime | None = None) -> date:
    """The request date in the bureau's time zone (Asia/Shanghai): age points use it."""
    return timezone.localdate(now or timezone.now())


def request_submit(
    *, insurer_id: int, insurer_slug: str, item: SubmitItem, api_key_id: int | None = None
) -> tuple[UnderwritingRequest, bool]:
    """Accept one request (:func:`requests_submit_many` with one item). Returns (request, created);
    raises the item's UnderwritingError (invalid resident ID, idempotency conflict)."""
    [outcome] = requests_submit_many(
        insurer_id=insurer_id, insurer_slug=insurer_slug, items=[item], api_key_id=api_key_id
    )
    if outcome.error is not None:
        raise outcome.error
    assert outcome.request is not None
    return outcome.request, outcome.created


def requests_submit_many(
    *, insurer_id: int, insurer_slug: str, items: Sequence[SubmitItem], api_key_id: int | None = None
) -> list[SubmitOutcome]:
    """Accept requests, verify them in the domain and queue the ones that may proceed; one outcome per
    item, in order. Each chunk of SUBMIT_CHUNK items is one transaction and a fixed number of queries.

    Identity is checked here, inside the domain, so the applicant's name and resident ID never travel
    through the broker or land on the request row (only the subject key and a masked ID do).
    """
    submitter = _Submitter(insurer_id, insurer_slug, api_key_id, *consent_policy_for(insurer_id=insurer_id))
    outcomes: list[SubmitOutcome] = []
    for start in range(0, len(items), SUBMIT_CHUNK):
        outcomes.extend(_submit_chunk(submitter, items[start : start + SUBMIT_CHUNK]))
    return outcomes


def consent_policy_for(*, insurer_id: int) -> tuple[str, int]:
    """The insurer's consent mode and the hours a resident has to confirm (ConsentPolicy or the default)."""
    rows = selectors.prepared_rows("consent_policy_for", _consent_policy_query, insurer_id)
    policy = rows[0] if rows else None
    if policy is not None:
        return str(policy[0]), int(policy[1])
    return str(settings.UNDERWRITING_CONSENT_MODE), int(settings.UNDERWRITING_CONSENT_CONFIRMATION_HOURS)


def _consent_policy_query(insurer_id: int) -> QuerySet[ConsentPolicy, tuple[str, int]]:
    return ConsentPolicy.objects.filter(insurer_id=insurer_id).order_by().values_list("mode", "confirmation_hours")[:1]


@dataclass(frozen=True)
class _Submitter:
    insurer_id: int
    insurer_slug: str
    api_key_id: int | None
    consent_mode: str = ConsentMode.DECLARED
    confirmation_hours: int = 72


@dataclass
class _Draft:
    """An item on its way to a request row, in the status verification decided for it: ``extracting``
    while it may proceed, ``rejected`` with a ``reason``, or ``awaiting_consent`` with a ``confirmation``
    (resident-confirmation mode; ``reachable``: identity matched). ``failure``: which check refused a
    ``not_verified`` one, for bureau staff. ``error``: the item's input is refused and no request is made."""

    index: int
    item: SubmitItem
    request: UnderwritingRequest
    manual: RatingManual | None = None
    status: RequestStatus = RequestStatus.EXTRACTING
    reason: RejectReason | None = None
    failure: VerificationFailure | None = None
    confirmation: ConsentConfirmation | None = None
    error: UnderwritingError | None = None

    def reject(self, reason: RejectReason) -> None:
        self.status, self.reason = RequestStatus.REJECTED, reason

    def refuse(self, error: UnderwritingError) -> None:
        self.status, self.error = RequestStatus.REJECTED, error


def _pending(drafts: list[_Draft]) -> list[_Draft]:
    return [draft for draft in drafts if draft.status == RequestStatus.EXTRACTING]


def _submit_chunk(submitter: _Submitter, items: Sequence[SubmitItem]) -> list[SubmitOutcome]:
    attempt = 1
    while True:
        try:
            with transaction.atomic():
                return _submit_once(submitter, items)
        except IntegrityError:
            # Another submission committed one of these idempotency keys or consent references first;
            # this chunk was rolled back whole, and the next pass replays or compares against its rows.
            if attempt == SUBMIT_ATTEMPTS:
                raise
            attempt += 1


def _submit_once(submitter: _Submitter, items: Sequence[SubmitItem]) -> list[SubmitOutcome]:
    valid = [domain.resident_id_is_valid(item.applicant.resident_id) for item in items]
    # First, before anything is read: on SQLite a transaction that has read cannot wait for the write lock.
    _lock_subjects(
        {domain.subject_key_for(item.applicant.resident_id) for item, ok in zip(items, valid, strict=True) if ok}
    )
    now = timezone.now()  # after the lock: requests committed while we waited are older than ours
    used = _requests_by_idempotency_key(submitter.insurer_id, items)
    outcomes: dict[int, SubmitOutcome] = {}
    drafts: list[_Draft] = []
    claimed: dict[str, _Draft] = {}
    repeats: list[tuple[int, _Draft]] = []
    for index, item in enumerate(items):
        key = item.idempotency_key
        if key in used:
            outcomes[index] = _replay(used[key], item.body_sha256)
        elif not valid[index]:
            outcomes[index] = SubmitOutcome(error=_invalid_resident_id())
        elif key in claimed:
            repeats.append((index, claimed[key]))  # the same key twice in one chunk: a replay of the first
        else:
            drafts.append(_Draft(index, item, _new_request(submitter, item, now)))
            if key:
                claimed[key] = drafts[-1]
    audit: list[Event] = []  # the domain's consent events, inserted with the requests' own
    _verify(drafts, submitter, now, audit)
    refused = {draft.index: SubmitOutcome(error=draft.error) for draft in drafts if draft.error is not None}
    drafts = [draft for draft in drafts if draft.error is None]
    _save(drafts, submitter, now, audit)
    outcomes.update(refused)
    outcomes.update((draft.index, SubmitOutcome(request=draft.request, created=True)) for draft in drafts)
    outcomes.update(
        (index, refused.get(first.index) or _replay(first.request, items[index].body_sha256))
        for index, first in repeats
    )
    return [outcomes[index] for index in range(len(items))]


def _lock_subjects(subject_keys: set[str]) -> None:
    """Lock the subjects' admission rows until the transaction ends (AdmissionLock) with one upsert: a
    missing row is inserted, an existing one updated, and either way PostgreSQL holds its row lock until
    commit. Rows go in key order, so two submissions that share subjects wait for each other and never
    deadlock; whoever waited counts, once it holds the lock, the requests the other committed."""
    if not subject_keys:
        return
    now = timezone.now()
    AdmissionLock.objects.bulk_create(
        [AdmissionLock(subject_key=key, locked_at=now) for key in sorted(subject_keys)],
        update_conflicts=True,
        unique_fields=["subject_key"],
        update_fields=["locked_at"],
    )


def _requests_by_idempotency_key(insurer_id: int, items: Sequence[SubmitItem]) -> dict[str, UnderwritingRequest]:
    keys = {item.idempotency_key for item in items if item.idempotency_key}
    if not keys:
        return {}
    # Almost always none is found: look with a query that is cheap to build, then read the rows found.
    if len(keys) == 1:  # a single submission's: the same statement each time
        ids = selectors.prepared_rows("idempotency_key:1", _idempotency_query, insurer_id, *keys)
    else:
        ids = list(_idempotency_query(insurer_id, *keys))
    found = [pk for (pk,) in ids]
    if not found:
        return {}
    rows = UnderwritingRequest.objects.filter(pk__in=found).select_related("manual").defer(*LARGE_REQUEST_FIELDS)
    return {row.idempotency_key: row for row in rows}


def _idempotency_query(insurer_id: int, *keys: str) -> QuerySet[UnderwritingRequest, tuple[uuid.UUID]]:
    return (
        UnderwritingRequest.objects.filter(insurer_id=insurer_id, idempotency_key__in=keys).order_by().values_list("pk")
    )


def _replay(existing: UnderwritingRequest, body_sha256: str) -> SubmitOutcome:
    if existing.body_sha256 != body_sha256:
        error = UnderwritingError(
            "idempotency_conflict", gettext_noop("This Idempotency-Key was already used with a different request body.")
        )
        return SubmitOutcome(error=error)
    return SubmitOutcome(request=existing, created=False)


def _invalid_resident_id() -> UnderwritingError:
    return UnderwritingError(
        "invalid_input",
        gettext_noop("The request has invalid fields."),
        fields={"applicant.resident_id": [gettext_noop("Not a valid ID.")]},
    )


def _new_request(submitter: _Submitter, item: SubmitItem, now: datetime) -> UnderwritingRequest:
    resident_id = domain.resident_id_normalise(item.applicant.resident_id)
    return UnderwritingRequest(
        id=uuid.uuid4(),
        insurer_id=submitter.insurer_id,
        reference=item.reference,
        api_key_id=submitter.api_key_id,
        idempotency_key=item.idempotency_key,
        body_sha256=item.body_sha256,
        subject_key=domain.subject_key_for(resident_id),
        resident_id_masked=domain.mask_resident_id(resident_id),
        manual_slug=item.manual_slug,
        as_of=request_date(now),
        status=RequestStatus.VERIFYING,
        created_at=now,  # one clock reading with a rejection's completed_at (_settle)
    )


# --- verification ----------------------------------------------------------------------------------


def _verify(drafts: list[_Draft], submitter: _Submitter, now: datetime, audit: list[Event]) -> None:
    """Decide each draft: it proceeds (``extracting``), is rejected with a reason, or its input is refused.

    Order matters: the manual first (cheap, no personal data), then the rate limits, which look at nothing
    but the subject key and the requests already made, then identity and consent together. Each step looks
    only at the drafts the steps before it let through, with one query for all of them.
    """
    _check_manuals(drafts, submitter.insurer_slug)
    _check_rate_limit(_pending(drafts), submitter.insurer_id, now)
    _check_identity_and_consent(_pending(drafts), submitter, now, audit)


def _check_manuals(drafts: list[_Draft], insurer_slug: str) -> None:
    if not drafts:
        return
    manuals = selectors.manuals_for_use(slugs={draft.item.manual_slug for draft in drafts}, insurer_slug=insurer_slug)
    for draft in drafts:
        draft.manual = manuals.get(draft.item.manual_slug)
        if draft.manual is None:
            draft.reject(RejectReason.MANUAL_NOT_APPROVED)


def _check_identity_and_consent(drafts: list[_Draft], submitter: _Submitter, now: datetime, audit: list[Event]) -> None:
    """Both checks run for every draft, and any failure is the one reason ``not_verified``: an unknown ID,
    a wrong name and consent that does not cover the request look alike to the insurer.

    The evidence is recorded whatever the identity check found, so that nothing about it (such as a
    reference already used with other evidence, ``invalid_input``) depends on whether the person exists."""
    if not drafts:
        return
    checks = domain.identity_check_many(
        applicants=[(d.item.applicant.resident_id, d.item.applicant.name) for d in drafts]
    )
    evidence = [(draft.request.subject_key, draft.item.consent) for draft in drafts]
    recorded = domain.consent_record_many(insurer_slug=submitter.insurer_slug, evidence=evidence, audit=audit)
    for draft, check, consent in zip(drafts, checks, recorded, strict=True):
        if isinstance(consent, DomainError):
            # Malformed evidence, or a reference reused with different evidence (evidence is immutable):
            # the insurer's own input, refused like an invalid field, whoever the person is.
            draft.refuse(_consent_refused(consent))
            continue
        if check is None:  # a malformed ID, refused before submission; kept as a guard
            draft.reject(RejectReason.INVALID_INPUT)
            continue
        if submitter.consent_mode == ConsentMode.RESIDENT:
            _await_resident(draft, reachable=check.outcome == "matched", submitter=submitter, now=now)
            continue
        draft.request.consent_id = consent.consent_id
        problem: str | None = consent.problem(purpose="underwriting", at=now)
        if (
            problem is None
            and submitter.consent_mode == ConsentMode.FORM
            and not consent_artifact_exists(digest=draft.item.consent.artifact_sha256)
        ):
            problem = VerificationFailure.Consent.NO_FORM
        if check.outcome != "matched" or problem is not None:
            draft.reject(RejectReason.NOT_VERIFIED)
            draft.failure = VerificationFailure(
                request=draft.request, identity=check.outcome, consent=problem or VerificationFailure.Consent.VALID
            )


def _consent_refused(error: DomainError) -> UnderwritingError:
    """The domain's refusal of the evidence, its fields named as the request's (``consent.reference``)."""
    fields = {f"consent.{name}": messages for name, messages in error.fields.items()}
    return UnderwritingError(error.code, error.message, fields=fields or {"consent": [error.message]})


def _await_resident(draft: _Draft, *, reachable: bool, submitter: _Submitter, now: datetime) -> None:
    """Resident mode: the insurer's own consent claim proves nothing; the request waits for the resident.
    Whether the resident can be asked (``reachable``) is kept for staff and the resident page only."""
    draft.status = RequestStatus.AWAITING_CONSENT
    draft.confirmation = ConsentConfirmation(
        request=draft.request,
        subject_key=draft.request.subject_key,
        reachable=reachable,
        expires_at=now + timedelta(hours=submitter.confirmation_hours),
    )


def _check_rate_limit(drafts: list[_Draft], insurer_id: int, now: datetime) -> None:
    """Two limits bound what repeated requests reveal about a person (DESIGN.md, "Leakage over time").

    Per subject, across every insurer and manual: at most UNDERWRITING_SUBJECT_LIMIT_COUNT requests in
    UNDERWRITING_SUBJECT_LIMIT_DAYS and UNDERWRITING_SUBJECT_LIMIT_YEAR in 365 days; no override lifts
    these, so the per-subject bound stated in DESIGN.md holds. Per (insurer, subject): at most
    UNDERWRITING_RATE_LIMIT_COUNT in UNDERWRITING_RATE_LIMIT_DAYS; past it, only a live override granted by
    bureau staff lets a request through (and spends one use).

    Every request the limits let through counts, refused later or not (a name guess costs as much as an
    answer), for an unknown resident ID as for a known one, so being rate limited tells nothing about
    identity. Only refusals before the limits (UNCOUNTED_REASONS) do not count. The caller holds the
    subjects' admission locks, so the count includes every request committed before ours.

    Requests earlier in the same chunk count like committed ones, so a batch cannot slip past a limit."""
    if not drafts:
        return
    subjects = {draft.request.subject_key for draft in drafts}
    window = now - timedelta(days=settings.UNDERWRITING_RATE_LIMIT_DAYS)
    month = now - timedelta(days=settings.UNDERWRITING_SUBJECT_LIMIT_DAYS)
    since = (now - timedelta(days=365), month, window, insurer_id)
    if len(subjects) == 1:  # a single submission's: the same statement each time
        counted = selectors.prepared_rows("limit_counts:1", _limit_counts_query, *since, *subjects)
    else:
        counted = list(_limit_counts_query(*since, *subjects))
    counts = {subject: [year, this_month, by_insurer] for subject, year, this_month, by_insurer in counted}
    year_limit, month_limit = (
        int(settings.UNDERWRITING_SUBJECT_LIMIT_YEAR),
        int(settings.UNDERWRITING_SUBJECT_LIMIT_COUNT),
    )
    insurer_limit = int(settings.UNDERWRITING_RATE_LIMIT_COUNT)
    for draft in drafts:
        seen = counts.setdefault(draft.request.subject_key, [0, 0, 0])
        year, this_month, by_insurer = seen
        if (
            year >= year_limit
            or this_month >= month_limit
            or (by_insurer >= insurer_limit and override_use(request=draft.request) is None)
        ):
            draft.reject(RejectReason.RATE_LIMITED)
        else:
            seen[:] = [count + 1 for count in seen]


def _limit_counts_query(
    year: datetime, month: datetime, window: datetime, insurer_id: int, *subjects: str
) -> QuerySet[UnderwritingRequest, tuple[str, int, int, int]]:
    """Per subject: the requests counted against the limits since ``year``, since ``month``, and since
    ``window`` by this insurer."""
    return (
        selectors.requests_counted_against_limits()
        .filter(subject_key__in=subjects, created_at__gte=year)
        .values("subject_key")
        .annotate(
            year=Count("id"),
            month=Count("id", filter=Q(created_at__gte=month)),
            insurer=Count("id", filter=Q(created_at__gte=window, insurer_id=insurer_id)),
        )
        .order_by()
        .values_list("subject_key", "year", "month", "insurer")
    )


# --- writing -----------------------------------------------------------------------------------------


def _save(drafts: list[_Draft], submitter: _Submitter, now: datetime, audit: list[Event]) -> None:
    """Insert the requests in their final status with their events and audit entries (after ``audit``,
    the consent evidence's, in the same INSERT); queue the ones that proceed and the terminal ones'
    webhooks once this transaction commits."""
    if not drafts:
        audit_record_many(audit)  # evidence recorded for items refused after all
        return
    for draft in drafts:
        _settle(draft, now)
    UnderwritingRequest.objects.bulk_create([draft.request for draft in drafts])
    RequestEvent.objects.bulk_create(event for draft in drafts for event in _events(draft))
    VerificationFailure.objects.bulk_create([draft.failure for draft in drafts if draft.failure is not None])
    waiting = [draft.confirmation for draft in drafts if draft.confirmation is not None]
    ConsentConfirmation.objects.bulk_create(waiting)
    audit_record_many([*audit, *(event for draft in drafts for event in _audit_events(draft))])
    if any(draft.status == RequestStatus.EXTRACTING for draft in drafts):
        # The comparison grant is issued by the data domain when it extracts the features, not here.
        stage_wake_on_commit("extract")
    # The domain tells the matched residents it holds a phone number for; nobody else hears of it.
    domain_residents.residents_notify_on_commit(subject_keys=[c.subject_key for c in waiting if c.reachable])
    settled = [draft.request.pk for draft in drafts if draft.status != RequestStatus.EXTRACTING]
    if settled:
        # No ``?wait`` can be waiting for these yet (nobody has their ids), so no wake-up is published.
        webhooks_enqueue_for_requests(request_ids=settled)


def _settle(draft: _Draft, now: datetime) -> None:
    """Put the request in the status its verification decided, as the guarded transitions would."""
    request = draft.request
    request.status = draft.status
    if draft.status == RequestStatus.REJECTED:
        request.reason, request.completed_at = str(draft.reason), now
    else:
        request.manual = draft.manual


def _events(draft: _Draft) -> list[RequestEvent]:
    request = draft.request
    return [
        RequestEvent(request=request, to_status=RequestStatus.RECEIVED),
        RequestEvent(request=request, from_status=RequestStatus.RECEIVED, to_status=RequestStatus.VERIFYING),
        RequestEvent(
            request=request, from_status=RequestStatus.VERIFYING, to_status=request.status, reason=request.reason
        ),
    ]


def _audit_events(draft: _Draft) -> list[Event]:
    request = draft.request
    kind, pk = "underwriting_request", str(request.pk)
    received = {
        "insurer_id": request.insurer_id,
        "manual": request.manual_slug,
        "subject": subject_ref(request.subject_key),
    }
    verified: dict[str, object] = {
        "from": str(RequestStatus.VERIFYING),
        "to": str(request.status),
        "reason": request.reason,
    }
    if draft.failure is not None:  # for bureau staff: which check failed (the insurer sees the reason alone)
        verified.update(identity=draft.failure.identity, consent=draft.failure.consent)
    if draft.confirmation is not None:  # for bureau staff: whether the resident can be asked at all
        verified["reachable"] = draft.confirmation.reachable
    return [
        Event("request.received", f"insurer:{request.insurer_id}", kind, pk, received),
        Event("request.transition", "", kind, pk, {"from": "received", "to": "verifying", "reason": ""}),
        Event("request.transition", "", kind, pk, verified),
    ]
