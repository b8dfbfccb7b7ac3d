"""The asynchronous steps of a request after verification: extract -> score -> custodian -> finalize.

Trust zones: ``request_extract`` runs on the domain queue (it reads raw records and produces only
ciphertexts); ``request_score`` and ``request_finalize`` run on the scoring queue and see ciphertexts,
plaintext manual weights and, at the end, the tier; the custodian decrypts only blinded, shuffled,
sign-flipped comparison values and answers signs.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from functools import partial
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from datadomain import keyring
from datadomain import services as domain
from datadomain.catalog import FEATURE_VALUE_MAX
from securecompute.protocol import ComparisonAnswer, ciphertexts_from_json, ciphertexts_to_json
from securecompute.scoring import encrypted_score, score_bound
from securecompute.tiering import TieringState, build_tier_query, tier_index_from_answer
from underwriting import selectors, tasks
from underwriting.models import RequestStatus, UnderwritingRequest
from underwriting.services.dispatch import enqueue, enqueue_on_commit
from underwriting.services.state import fail, transition
from underwriting.services.webhooks import webhooks_enqueue_for_request

logger = logging.getLogger(__name__)


def _load(request_id: uuid.UUID | str, status: str) -> UnderwritingRequest | None:
    """The request if it is still in ``status``; None means another run already moved it on."""
    rows = UnderwritingRequest.objects.select_related("manual").filter(pk=request_id, status=status)
    deferred = ["manual__document", "manual__parsed"]  # parsed once per process: selectors.manual_document
    if status == RequestStatus.EXTRACTING:
        deferred.append("tiering_state")  # ciphertexts are only read from scoring on
    return rows.defer(*deferred).first()


def request_extract(*, request_id: uuid.UUID | str) -> None:
    """Encrypted feature vector of the subject for the manual's features, handed to scoring."""
    request = _load(request_id, RequestStatus.EXTRACTING)
    if request is None or request.manual is None:
        return
    document = selectors.manual_document(request.manual)
    key_id, public_key = keyring.active_public_key()
    ciphertexts = domain.encrypted_feature_vector(
        subject_key=request.subject_key, feature_names=document.feature_names, as_of=request.as_of,
        public_key=public_key,
    )  # fmt: skip
    payload = {"key_id": key_id, "ciphertexts": ciphertexts_to_json(ciphertexts)}
    with transaction.atomic():
        moved = transition(
            request.pk, from_status=RequestStatus.EXTRACTING, to_status=RequestStatus.SCORING, tiering_state=payload
        )
        if moved:
            enqueue_on_commit(partial(tasks.score_request.delay, str(request.pk)), what="scoring")


def request_score(*, request_id: uuid.UUID | str) -> None:
    """Enc(s) = sum w_i Enc(x_i); blinded comparisons against the manual's thresholds go to the custodian."""
    request = _load(request_id, RequestStatus.SCORING)
    if request is None or request.manual is None or not request.tiering_state:
        return
    document = selectors.manual_document(request.manual)
    key_id = request.tiering_state["key_id"]
    public_key = keyring.public_key(key_id)
    ciphertexts = ciphertexts_from_json(request.tiering_state["ciphertexts"], public_key)
    encrypted = encrypted_score(public_key, ciphertexts, document.weights)
    query, state = build_tier_query(
        public_key, encrypted, document.thresholds, request_id=str(request.pk),
        score_bound=score_bound(document.weights, FEATURE_VALUE_MAX),
    )  # fmt: skip
    saved = {"key_id": key_id, "query": query.to_dict(), "state": state.to_dict()}
    with transaction.atomic():
        moved = transition(
            request.pk, from_status=RequestStatus.SCORING, to_status=RequestStatus.TIERING, tiering_state=saved
        )
        if moved:
            enqueue_on_commit(partial(_ask_custodian, str(request.pk), saved["query"]), what="custodian query")


def _ask_custodian(request_id: str, query: dict[str, Any]) -> None:
    # By name: underwriting does not import the custodian module (the only one with private keys).
    current_app.signature(
        "datadomain.custodian.answer_comparisons",
        args=(request_id, query),
        queue="custodian",
        link=tasks.finalize_request.s(request_id),
    ).apply_async()


def request_finalize(*, request_id: uuid.UUID | str, answer: dict[str, Any]) -> None:
    """Un-shuffle the custodian's signs into the tier and complete the request."""
    request = _load(request_id, RequestStatus.TIERING)
    if request is None or request.manual is None or not request.tiering_state:
        return
    document = selectors.manual_document(request.manual)
    state = TieringState.from_dict(request.tiering_state["state"])
    index = tier_index_from_answer(state, ComparisonAnswer.from_dict(answer))
    tier = document.tiers[index]
    with transaction.atomic():
        completed = transition(
            request.pk,
            from_status=RequestStatus.TIERING,
            to_status=RequestStatus.COMPLETED,
            tier_code=tier.code,
            tier_label=tier.label,
            decision=tier.decision,
            table_rating=tier.table_rating or "",
        )
        if completed:
            webhooks_enqueue_for_request(request_id=request.pk)


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
    count = 0
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
        _resume(request)
        count += 1
    return count


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


def _resume(request: UnderwritingRequest) -> None:
    request_id = str(request.pk)
    if request.status == RequestStatus.EXTRACTING:
        enqueue(partial(tasks.extract_features.delay, request_id), what="extraction")
    elif request.status == RequestStatus.SCORING:
        enqueue(partial(tasks.score_request.delay, request_id), what="scoring")
    elif request.status == RequestStatus.TIERING and request.tiering_state:
        # The same query again: the custodian recognises it and answers without spending budget.
        enqueue(partial(_ask_custodian, request_id, request.tiering_state["query"]), what="custodian query")
