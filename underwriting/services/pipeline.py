"""The asynchronous stages of a request after verification: extract -> score -> custodian -> finalize.

Trust zones: extraction runs on the domain queue (it reads raw records and produces only ciphertexts);
scoring and finalisation run on the scoring queue and see ciphertexts, plaintext manual weights and, at
the end, the tier; the custodian decrypts only blinded, shuffled, sign-flipped comparison values and
answers signs.

Each stage works on chunks. A stage's drain task (``stage_drain``, woken by
``dispatch.stage_wake``) claims up to UNDERWRITING_STAGE_CHUNK requests in its status with
``SELECT ... FOR UPDATE SKIP LOCKED`` (two drains never take the same request), does the chunk's work
set-based, moves the chunk with one guarded UPDATE (``state.transition_many``) and wakes the next stage.
Scoring sends the chunk's comparison queries to the custodian in one message, and its answers come back
to ``requests_finalize`` in one message. An idle stack moves a lone request through the same path at
once; under load a drain finds many requests waiting and the per-request cost falls.

A request whose own data cannot be processed (its subject erased since verification, a ciphertext the
custodian refuses) turns ``failed`` at once and does not hold back its chunk; one whose subject's records
are held (incompletely linked, ``datadomain.linkage``) is rejected with admission's neutral reason, the
cause kept for bureau staff. Anything else (database, broker, no active key) fails the whole chunk, which
Celery retries with backoff and the sweeper resumes.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from audit.services import Event, audit_record_many
from config.celery import enqueue
from datadomain import keyring
from datadomain import selectors as domain_selectors
from datadomain import services as domain
from datadomain.catalog import value_bounds
from datadomain.errors import DomainError
from securecompute.binding import BindingParams, TagMaterial, tag_material_ciphertexts
from securecompute.errors import SecureComputeError
from securecompute.keys import key_id
from securecompute.paillier import modulus, raw_ciphertext
from securecompute.protocol import (
    PROTOCOL_VERSION,
    ComparisonAnswer,
    ciphertexts_from_json,
    ciphertexts_to_json,
    is_packed,
)
from securecompute.scoring import encrypted_score, score_bound
from securecompute.tiering import (
    PackItem,
    TieringState,
    build_packed_query,
    build_tier_query,
    tier_index_from_answer,
    tiering_params,
)
from underwriting import selectors
from underwriting.manual_format import ManualDocument
from underwriting.models import (
    RejectReason,
    RequestStatus,
    ScoringInput,
    TieringSecret,
    UnderwritingRequest,
    VerificationFailure,
    WebhookEndpoint,
)
from underwriting.services.dispatch import stage_wake, stage_wake_on_commit, stage_woken
from underwriting.services.state import fail, transition_many
from underwriting.services.webhooks import webhooks_enqueue_for_request, webhooks_enqueue_for_requests

logger = logging.getLogger(__name__)

T = TypeVar("T")
# How long one drain task keeps taking chunks before it hands the rest to a new task: well under
# CELERY_TASK_SOFT_TIME_LIMIT, whatever the chunk size.
DRAIN_SECONDS = 10.0
# What a request's own bad data raises while it is scored or tiered; it fails that request alone. Anything
# else (the database, a time limit) fails the chunk, which is retried.
ITEM_ERRORS = (SecureComputeError, DomainError, ValueError, KeyError, TypeError)


def stage_drain(stage: str) -> int:
    """Move every request waiting in ``stage`` on, a chunk at a time; returns how many were claimed."""
    stage_woken(stage)
    step = STAGE_STEPS[stage]
    chunk = int(settings.UNDERWRITING_STAGE_CHUNK)
    deadline = time.monotonic() + DRAIN_SECONDS
    total = 0
    while True:
        claimed = step(chunk)
        total += claimed
        if claimed < chunk:
            return total
        if time.monotonic() > deadline:
            # A long backlog (a large batch) is taken over by a fresh task rather than run into the task's
            # time limit; the other stages' tasks get their turn on the worker meanwhile.
            stage_wake(stage)
            return total


@dataclass(frozen=True)
class Claimed:
    """What a stage needs of a request it holds (no model instances: the claim is the hot path)."""

    pk: uuid.UUID
    manual_id: int | None
    subject_key: str
    as_of: date
    consent_id: int | None = None
    hooked: bool = False  # its insurer had an active webhook endpoint when it was claimed (``_claim(hooked=True)``)

    def document(self) -> ManualDocument:
        if self.manual_id is None:
            raise ValueError("the request has no manual")
        return selectors.manual_document_by_id(self.manual_id)


def _claim(status: str, *, limit: int, ids: Iterable[str] | None = None, hooked: bool = False) -> list[Claimed]:
    """Lock up to ``limit`` requests in ``status``, oldest first, skipping those another drain holds.
    ``hooked``: also read whether each request's insurer has an active webhook endpoint (in the same
    statement), for a stage that makes requests terminal."""
    rows = UnderwritingRequest.objects.select_for_update(skip_locked=True).filter(status=status)
    if ids is not None:
        rows = rows.filter(pk__in=list(ids))
    fields = ["pk", "manual_id", "subject_key", "as_of", "consent_id"]
    if hooked:
        active = WebhookEndpoint.objects.filter(insurer_id=OuterRef("insurer_id"), is_active=True)
        rows, fields = rows.annotate(hooked=Exists(active)), [*fields, "hooked"]
    return [Claimed(*row) for row in rows.order_by("updated_at").values_list(*fields)[:limit]]


def _extract_chunk(limit: int) -> int:
    """Encrypted feature vectors of a chunk of subjects (a few queries in all) and the grants that
    authorise their comparisons, handed to scoring. Runs in the data domain's zone."""
    with transaction.atomic():
        claimed = _claim(RequestStatus.EXTRACTING, limit=limit)
        if not claimed:
            return 0
        requests = _consent_still_given(claimed)
        if not requests:
            return len(claimed)
        inputs: list[ScoringInput] = []
        failed: dict[uuid.UUID, str] = {}
        groups: dict[tuple[int, date], list[Claimed]] = {}
        for request in requests:
            if request.manual_id is None:
                failed[request.pk] = "no manual"
            else:
                groups.setdefault((request.manual_id, request.as_of), []).append(request)
        for (_, as_of), group in groups.items():
            inputs += _authorise_group(group, as_of, failed)
        moved = set(
            transition_many(
                {i.request_id: {} for i in inputs},
                from_status=RequestStatus.EXTRACTING,
                to_status=RequestStatus.SCORING,
            )
        )
        ScoringInput.objects.bulk_create([i for i in inputs if i.request_id in moved])
        if moved:
            stage_wake_on_commit("score")
        _fail_many(failed, from_status=RequestStatus.EXTRACTING, what="extracted")
    return len(claimed)


def _consent_still_given(requests: list[Claimed]) -> list[Claimed]:
    """The requests whose consent still covers underwriting now; the others are rejected
    (``consent_withdrawn``) before any record of their subject is read. Consent may be withdrawn after
    admission or the resident's approval (the resident page, staff, an insurer's notice) while a request
    waits for extraction; this is the last moment that can stop it. A request admitted without a consent
    record (none is made without one) is not held back here."""
    problems = domain.consent_problems(
        consent_ids=[r.consent_id for r in requests if r.consent_id is not None], at=timezone.now()
    )
    stopped = [r.pk for r in requests if r.consent_id is not None and r.consent_id in problems]
    if not stopped:
        return requests
    rejected = transition_many(
        {pk: {} for pk in stopped},
        from_status=RequestStatus.EXTRACTING,
        to_status=RequestStatus.REJECTED,
        reason=RejectReason.CONSENT_WITHDRAWN,
    )
    webhooks_enqueue_for_requests(request_ids=rejected)
    stopped_ids = set(stopped)
    return [r for r in requests if r.pk not in stopped_ids]


def _authorise_group(group: list[Claimed], as_of: date, failed: dict[uuid.UUID, str]) -> list[ScoringInput]:
    """One manual's requests on one date: their subjects' vectors under the active key and a grant for
    each, as scoring inputs; a subject erased since verification is added to ``failed``, one whose records
    are held is rejected."""
    document = group[0].document()
    key_id, public_key, vectors = domain.subject_vectors_active(
        subject_keys=[request.subject_key for request in group], feature_names=document.feature_names, as_of=as_of
    )
    found = [request for request in group if request.subject_key in vectors]
    missing = [request for request in group if request not in found]
    held = domain_selectors.subjects_held(subject_keys=[r.subject_key for r in missing]) if missing else set()
    _reject_held([request.pk for request in missing if request.subject_key in held])
    failed.update((r.pk, "subject erased since it was verified") for r in missing if r.subject_key not in held)
    issued = domain.comparison_grants_issue(
        requests=[_grant_request(request, document, vectors[request.subject_key]) for request in found],
        key_id=key_id, public_key=public_key,
    )  # fmt: skip
    return [_scoring_input(r.pk, key_id, vectors[r.subject_key].ciphertexts, issued[str(r.pk)]) for r in found]


def _reject_held(request_ids: list[uuid.UUID]) -> None:
    """Requests whose subject's records are held (incompletely or doubtfully linked, datadomain.linkage)
    are never answered on partial records. The insurer gets admission's neutral ``not_verified``, which
    says nothing of whether the person exists; bureau staff see the cause (``VerificationFailure``
    ``held``, the audit trail) and can resolve the link, after which a new request is answered."""
    rejected = transition_many(
        {pk: {} for pk in request_ids},
        from_status=RequestStatus.EXTRACTING,
        to_status=RequestStatus.REJECTED,
        reason=RejectReason.NOT_VERIFIED,
    )
    held, valid = VerificationFailure.Identity.HELD, VerificationFailure.Consent.VALID
    VerificationFailure.objects.bulk_create(
        [VerificationFailure(request_id=pk, identity=held, consent=valid) for pk in rejected], ignore_conflicts=True
    )
    audit_record_many(Event("request.records_held", "", "underwriting_request", str(pk), {}) for pk in rejected)
    for request_id in rejected:
        logger.warning("underwriting request %s rejected: its subject's records are held (record linkage)", request_id)
    webhooks_enqueue_for_requests(request_ids=rejected)


def _grant_request(request: Claimed, document: ManualDocument, vector: domain.SubjectVector) -> domain.GrantRequest:
    return domain.GrantRequest(
        request_ref=str(request.pk), features=vector.ciphertexts, weights=document.weights,
        thresholds=document.thresholds, score_bound=manual_score_bound(document), values=vector.values,
    )  # fmt: skip


def _scoring_input(pk: uuid.UUID, key_id: str, vector: list[Any], issued: domain.IssuedGrant) -> ScoringInput:
    public_key = vector[0].public_key
    tags = ciphertexts_to_json(tag_material_ciphertexts(public_key, issued.tags))
    return ScoringInput(
        request_id=pk, key_id=key_id, slot_bits=issued.slot_bits, features=ciphertexts_to_json(vector),
        tags=tags, expires_at=issued.expires_at,
    )  # fmt: skip


def _score_chunk(limit: int) -> int:
    """Enc(s) = sum w_i Enc(x_i) per request; the chunk's tagged, blinded comparisons go to the custodian
    together. Runs in the scoring zone: it reads the domain's ScoringInput and keeps its secret state in
    TieringSecret, which no other zone can read."""
    with transaction.atomic():
        requests = _claim(RequestStatus.SCORING, limit=limit)
        inputs = _take(ScoringInput, [r.pk for r in requests])  # the ciphertexts are not needed after this chunk
        items, failed = _each(requests, lambda request: _scoring_item(request, inputs.get(request.pk)))
        moved = transition_many(
            {pk: {} for pk in items}, from_status=RequestStatus.SCORING, to_status=RequestStatus.TIERING
        )
        secrets, queries = _tier_queries([items[pk] for pk in moved])
        TieringSecret.objects.bulk_create(secrets)
        if queries:
            transaction.on_commit(partial(_ask_custodian, queries))
        _fail_many(failed, from_status=RequestStatus.SCORING, what="scored")
    return len(requests)


StageRow = TypeVar("StageRow", ScoringInput, TieringSecret)


def _take(model: type[StageRow], request_ids: list[uuid.UUID]) -> dict[uuid.UUID, StageRow]:
    """Read and delete the stage rows of these requests, in the caller's transaction (a rollback keeps
    them): one ``DELETE ... RETURNING`` on PostgreSQL, a SELECT and a DELETE elsewhere."""
    if not request_ids:
        return {}
    if connection.vendor != "postgresql":
        rows = {row.request_id: row for row in model.objects.filter(request_id__in=request_ids)}
        model.objects.filter(request_id__in=request_ids).delete()
        return rows
    fields = model._meta.concrete_fields
    table = model._meta.db_table
    columns = ", ".join(f'"{field.column}"' for field in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f'DELETE FROM "{table}" WHERE "request_id" = ANY(%s::uuid[]) RETURNING {columns}',  # noqa: S608 # nosec B608 - names from the model, values bound
            [[str(pk) for pk in request_ids]],
        )
        fetched = cursor.fetchall()
    converters = [(field.get_db_converters(connection), field.get_col(table)) for field in fields]
    names = [field.attname for field in fields]
    taken: dict[uuid.UUID, StageRow] = {}
    for row in fetched:
        values = []
        for value, (functions, column) in zip(row, converters, strict=True):
            for function in functions:  # as the ORM reads the column (a JSON field's text, parsed)
                value = function(value, column, connection)
            values.append(value)
        instance = model.from_db(connection.alias, names, values)
        taken[instance.request_id] = instance
    return taken


def _each(requests: list[Claimed], compute: Callable[[Claimed], T]) -> tuple[dict[uuid.UUID, T], dict[uuid.UUID, str]]:
    """``compute`` for each request: its result, and the requests whose own data made it fail (with the
    error's class, for the log). One bad request must not hold back its chunk."""
    changes: dict[uuid.UUID, T] = {}
    failed: dict[uuid.UUID, str] = {}
    for request in requests:
        try:
            changes[request.pk] = compute(request)
        except ITEM_ERRORS as exc:
            failed[request.pk] = exc.__class__.__name__
    return changes, failed


@dataclass(frozen=True)
class _ScoringItem:
    """One request ready for tiering: its encrypted score, tag material and the packing its grant pinned."""

    pk: uuid.UUID
    public_key: Any
    params: BindingParams
    pack: PackItem
    expires_at: datetime

    @property
    def shape(self) -> tuple[str, int, int]:
        return (key_id(self.public_key), self.params.comparisons, self.params.slot_bits)


def _scoring_item(request: Claimed, given: ScoringInput | None) -> _ScoringItem:
    if given is None:
        raise ValueError("the request has no scoring input")
    document = request.document()
    public_key = keyring.public_key(given.key_id)
    features = ciphertexts_from_json(given.features, public_key)
    score_tag, unit_tag = (raw_ciphertext(c, public_key) for c in ciphertexts_from_json(given.tags, public_key))
    encrypted = encrypted_score(public_key, features, document.weights)
    bound = manual_score_bound(document)
    params = tiering_params(modulus(public_key).bit_length(), document.thresholds, score_bound=bound)
    if params.slot_bits != given.slot_bits:
        raise ValueError("the manual's packing differs from the one its grant pinned")
    item = PackItem(str(request.pk), encrypted, TagMaterial(score_tag, unit_tag), tuple(document.thresholds), bound)
    return _ScoringItem(request.pk, public_key, params, item, given.expires_at)


def _tier_queries(items: list[_ScoringItem]) -> tuple[list[TieringSecret], list[tuple[str, dict[str, Any]]]]:
    """The chunk's queries for the custodian and the secret state to read their answers with.

    Requests of one shape (key, number of comparisons, slot width) go out as one packed query when that
    takes fewer decryptions than one query each (securecompute.binding, "Packing several requests"): the
    pack's first request keeps the query in its TieringSecret, the others point to it."""
    shapes: dict[tuple[str, int, int], list[_ScoringItem]] = {}
    for item in items:
        shapes.setdefault(item.shape, []).append(item)
    secrets: list[TieringSecret] = []
    queries: list[tuple[str, dict[str, Any]]] = []
    for group in shapes.values():
        params = group[0].params
        if params.groups < 2 or -(-len(group) // params.groups) + 1 >= len(group):
            for item in group:
                single, state = build_tier_query(
                    item.public_key, item.pack.score, item.pack.tags, item.pack.thresholds,
                    request_id=item.pack.request_id, params=params, score_bound=item.pack.score_bound,
                )  # fmt: skip
                message = dict(single.to_dict())
                secrets.append(_secret(item, message, state))
                queries.append((item.pack.request_id, message))
            continue
        pack_id = f"pack-{uuid.uuid4()}"
        packed, states = build_packed_query(
            group[0].public_key, [item.pack for item in group], params=params, pack_id=pack_id
        )
        leader = group[0].pack.request_id
        pointer: dict[str, Any] = {"v": PROTOCOL_VERSION, "pack": pack_id, "leader": leader}
        message = dict(packed.to_dict())
        for item in group:
            query = message if item.pack.request_id == leader else pointer
            secrets.append(_secret(item, query, states[item.pack.request_id]))
        queries.append((pack_id, message))
    return secrets, queries


def _secret(item: _ScoringItem, query: dict[str, Any], state: TieringState) -> TieringSecret:
    return TieringSecret(request_id=item.pk, query=query, state=state.to_dict(), expires_at=item.expires_at)


def manual_score_bound(document: ManualDocument) -> int:
    """The bound on ``|score|`` the domain and the worker both size the comparison slots by."""
    return score_bound(document.weights, value_bounds(document.feature_names))


STAGE_STEPS = {"extract": _extract_chunk, "score": _score_chunk}


def _ask_custodian(queries: list[tuple[str, dict[str, Any]]]) -> bool:
    # By name: underwriting does not import the custodian module (the only one with private keys).
    return enqueue(
        "datadomain.custodian.answer_comparisons_batch",
        queries,
        link="underwriting.tasks.finalize_requests",
        what="custodian query",
    )


# An answer read this close to its grant's expiry (or later) is not trusted: the custodian answers random
# signs once a grant has expired, and the two clocks may differ by a little.
EXPIRY_MARGIN = timedelta(seconds=60)


def requests_finalize(*, answers: dict[str, dict[str, Any]]) -> int:
    """Un-shuffle the custodian's signs into each request's tier and complete the chunk. Returns how many
    completed; a request whose answer is unusable (not monotone, or read too close to its grant's expiry)
    turns ``failed``."""
    with transaction.atomic():
        requests = _claim(RequestStatus.TIERING, limit=len(answers), ids=answers, hooked=True)
        secrets = _take(TieringSecret, [r.pk for r in requests])  # the secret state goes with the answer
        now = timezone.now()
        changes, failed = _each(
            requests, lambda request: _tier_fields(request, secrets.get(request.pk), answers[str(request.pk)], now)
        )
        completed = transition_many(changes, from_status=RequestStatus.TIERING, to_status=RequestStatus.COMPLETED)
        hooked = {request.pk for request in requests if request.hooked}
        webhooks_enqueue_for_requests(request_ids=[pk for pk in completed if pk in hooked])  # none: no query
        _fail_many(failed, from_status=RequestStatus.TIERING, what="tiered")
    return len(completed)


def _tier_fields(
    request: Claimed, secret: TieringSecret | None, answer: dict[str, Any], now: datetime
) -> dict[str, Any]:
    if secret is None:
        raise ValueError("the request has no tiering state")
    if now > secret.expires_at - EXPIRY_MARGIN:
        raise ValueError("the answer came after the request's grant expired")
    document = request.document()
    state = TieringState.from_dict(secret.state)
    tier = document.tiers[tier_index_from_answer(state, ComparisonAnswer.from_dict(answer))]
    return {
        "tier_code": tier.code,
        "tier_label": tier.label,
        "decision": tier.decision,
        "table_rating": tier.table_rating or "",
    }


def _fail_many(why: dict[uuid.UUID, str], *, from_status: str, what: str) -> None:
    """Fail the requests in ``why`` (request id -> cause: an error class, never data) that are still in
    ``from_status``."""
    failed = transition_many({pk: {} for pk in why}, from_status=from_status, to_status=RequestStatus.FAILED)
    for request_id in failed:
        logger.warning("underwriting request %s failed: it could not be %s (%s)", request_id, what, why[request_id])
    webhooks_enqueue_for_requests(request_ids=failed)


def request_fail(*, request_id: uuid.UUID | str) -> None:
    with transaction.atomic():
        if fail(uuid.UUID(str(request_id))):
            logger.warning("underwriting request %s failed after retries", request_id)
            webhooks_enqueue_for_request(request_id=request_id)


def requests_sweep() -> int:
    """Re-enqueue the step of every request that made no progress for UNDERWRITING_STUCK_SECONDS.

    Covers a broker that was down when the request committed and a worker that died mid-task. A
    duplicate is harmless: every step is guarded by the request's status. After
    UNDERWRITING_MAX_ATTEMPTS sweeps a request turns ``failed``.

    A request whose step's queue still holds messages is left alone: its message may simply be waiting
    for a worker (a stopped custodian, a backlog), so re-sending would only add duplicates, and counting
    an attempt would fail requests during any outage longer than MAX_ATTEMPTS x STUCK_SECONDS. Once the
    queue has drained, a request that still has not moved is resumed.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.UNDERWRITING_STUCK_SECONDS)
    resumed: list[UnderwritingRequest] = []
    waiting: set[str] | None = None
    for request in selectors.stuck_requests(older_than=cutoff):
        waiting = _queues_with_waiting_messages() if waiting is None else waiting
        if STEP_QUEUES.get(request.status) in waiting:
            continue  # its message may still be queued (e.g. the custodian is stopped): not lost, not an attempt
        bumped = UnderwritingRequest.objects.filter(pk=request.pk, status=request.status, updated_at=request.updated_at)
        if not bumped.update(attempts=F("attempts") + 1, updated_at=timezone.now()):
            continue  # it moved on meanwhile
        if request.attempts + 1 > settings.UNDERWRITING_MAX_ATTEMPTS:
            request_fail(request_id=request.pk)
            continue
        resumed.append(request)
    _resume(resumed)
    return len(resumed)


# The queue each resumable step's message waits in (config/settings/base.py, CELERY_TASK_ROUTES).
STEP_QUEUES: dict[str, str] = {
    RequestStatus.EXTRACTING: "domain",
    RequestStatus.SCORING: "scoring",
    RequestStatus.TIERING: "custodian",
}


def _queues_with_waiting_messages() -> set[str]:
    """The step queues that hold messages no worker has taken yet; empty when the broker cannot say."""
    waiting = set()
    try:
        with current_app.connection_for_read() as connection:
            channel = connection.default_channel
            for queue in set(STEP_QUEUES.values()):
                try:
                    if channel.queue_declare(queue=queue, passive=True).message_count:  # type: ignore[attr-defined]
                        waiting.add(queue)
                except connection.channel_errors:
                    continue  # the queue does not exist: nothing waits in it
    except Exception:  # noqa: BLE001 - broker unreachable: resume as before (the enqueue itself logs)
        return set()
    return waiting


def _resume(requests: list[UnderwritingRequest]) -> None:
    stages = {RequestStatus.EXTRACTING: "extract", RequestStatus.SCORING: "score"}
    for status in {request.status for request in requests} & set(stages):
        stage_wake(stages[RequestStatus(status)])
    # The same queries again: the custodian recognises each and answers it as before.
    tiering = [request.pk for request in requests if request.status == RequestStatus.TIERING]
    queries = _stored_queries(tiering)
    chunk = int(settings.UNDERWRITING_STAGE_CHUNK)
    for start in range(0, len(queries), chunk):
        _ask_custodian(queries[start : start + chunk])


def _stored_queries(request_ids: list[uuid.UUID]) -> list[tuple[str, dict[str, Any]]]:
    """The queries these requests were sent in, each once: their own, or the packed query their pack's
    first request keeps (see ``_tier_queries``)."""
    rows = {str(pk): query for pk, query in TieringSecret.objects.filter(request_id__in=request_ids).values_list(
        "request_id", "query"
    )}  # fmt: skip
    leaders = {query["leader"] for query in rows.values() if "leader" in query} - set(rows)
    if leaders:
        rows.update(
            (str(pk), query)
            for pk, query in TieringSecret.objects.filter(request_id__in=leaders).values_list("request_id", "query")
        )
    queries: dict[str, dict[str, Any]] = {}
    for ref, query in rows.items():
        if "leader" not in query:
            queries[str(query.get("pack", ref)) if is_packed(query) else ref] = query
    return list(queries.items())
