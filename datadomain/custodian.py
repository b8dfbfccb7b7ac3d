"""The key custodian: the only module of the project allowed to import ``securecompute.private``.

It runs in its own Celery worker on the ``custodian`` queue (scripts/workers.sh, CELERY_TASK_ROUTES);
in production it is the only container that mounts CUSTODIAN_KEY_DIR and knows CUSTODIAN_KEK.
It learns nothing but signs: a scoring worker sends blinded, shuffled, sign-flipped comparisons
(securecompute.tiering) and the custodian answers at most the request's budget of them, which the
domain granted when it authorised the request (ComparisonGrant).
"""

from __future__ import annotations

import hashlib
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import phe
from celery import shared_task
from django.conf import settings
from django.db import transaction

from audit.approvals import Staff, approval_claim
from audit.models import Approval
from audit.services import Event, audit_record, audit_record_many
from datadomain import selectors
from datadomain.errors import DomainError
from datadomain.models import ComparisonGrant, CustodianKey, EncryptedFeatureVector
from securecompute import private
from securecompute.errors import BudgetExceededError, ProtocolError, SecureComputeError
from securecompute.keys import generate_keypair, key_id, public_key_to_json
from securecompute.protocol import AnswerJSON, ComparisonQuery

logger = logging.getLogger(__name__)


def _kek() -> bytes:
    return private.kek_from_env_value(str(settings.CUSTODIAN_KEK))


def _sealed_path(fingerprint: str) -> Path:
    return Path(settings.CUSTODIAN_KEY_DIR) / f"{fingerprint}.sealed"


@transaction.atomic
def keypair_create(*, bits: int, actor: str = "", approval_id: int | None = None) -> CustodianKey:
    """A new active key pair: the public half in the database, the private half sealed on disk (0600).

    Earlier active keys become ``retiring``: their ciphertexts stay readable until re-encrypted.
    """
    public_key, private_key = generate_keypair(bits)
    fingerprint = key_id(public_key)
    path = _sealed_path(fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    private.write_sealed_private_key(path, private_key, _kek())
    previous = list(CustodianKey.objects.filter(status=CustodianKey.Status.ACTIVE).values_list("key_id", flat=True))
    CustodianKey.objects.filter(status=CustodianKey.Status.ACTIVE).update(status=CustodianKey.Status.RETIRING)
    key = CustodianKey.objects.create(
        key_id=fingerprint, public_key_json=public_key_to_json(public_key), sealed_path=str(path)
    )
    audit_record(
        action="custodian.key_rotate" if previous else "custodian.key_create",
        actor=actor,
        target_type="custodian_key",
        target_id=fingerprint,
        detail={"bits": bits, "retiring": previous, **({"approval": approval_id} if approval_id else {})},
    )
    logger.info("custodian key %s created (%d bits)", fingerprint, bits)
    return key


def keypair_rotate_approved(*, approval_id: int, executed_by: Staff, bits: int) -> CustodianKey:
    """Carry out an approved four-eyes rotation here, in the custodian's process (``rotate_keypair
    --approval``). The approval is claimed in the same transaction: a failed rotation leaves it approved."""
    with transaction.atomic():
        approval_claim(approval_id=approval_id, kind=Approval.Kind.KEY_ROTATION, executed_by=executed_by)
        return keypair_create(bits=bits, actor=executed_by.get_username(), approval_id=approval_id)


def keypair_ensure(*, bits: int) -> tuple[CustodianKey, bool]:
    """The active key, creating one when there is none (for idempotent seeding)."""
    key = CustodianKey.objects.filter(status=CustodianKey.Status.ACTIVE).order_by("-created_at").first()
    if key is not None and Path(key.sealed_path).exists():
        return key, False
    return keypair_create(bits=bits), True


def vectors_drop_retiring() -> int:
    """Delete stored vectors under retiring keys (after re-encrypting them under the active key)."""
    retiring = CustodianKey.objects.filter(status=CustodianKey.Status.RETIRING).values_list("key_id", flat=True)
    deleted, _ = EncryptedFeatureVector.objects.filter(key_id__in=list(retiring)).delete()
    audit_record(action="custodian.vectors_drop", detail={"keys": list(retiring), "deleted": deleted})
    return deleted


def keys_retire_unused() -> list[str]:
    """Retire ``retiring`` keys that no stored ciphertext uses any more, and delete their sealed files."""
    retired = []
    retiring = CustodianKey.objects.filter(status=CustodianKey.Status.RETIRING).values_list("key_id", flat=True)
    for fingerprint in retiring:
        if not EncryptedFeatureVector.objects.filter(key_id=fingerprint).exists():
            key_retire(key_id=fingerprint)
            retired.append(fingerprint)
    return retired


@transaction.atomic
def key_retire(*, key_id: str, actor: str = "") -> None:
    """Retire one ``retiring`` key that no stored ciphertext uses, and delete its sealed private key
    (``DomainError`` with the reason otherwise). New ciphertexts are only ever made under the active key,
    so a key found unused here stays unused."""
    refusal = selectors.key_retire_refusal(key_id)
    if refusal is not None:
        raise refusal
    key = CustodianKey.objects.get(key_id=key_id)
    if not CustodianKey.objects.filter(pk=key.pk, status=CustodianKey.Status.RETIRING).update(
        status=CustodianKey.Status.RETIRED
    ):
        return  # retired meanwhile by another run
    audit_record(action="custodian.key_retire", actor=actor, target_type="custodian_key", target_id=key_id)
    if key.sealed_path:
        Path(key.sealed_path).unlink(missing_ok=True)
    _private_key.cache_clear()


@lru_cache(maxsize=4)
def _private_key(fingerprint: str) -> phe.PaillierPrivateKey:
    key = CustodianKey.objects.filter(key_id=fingerprint).exclude(status=CustodianKey.Status.RETIRED).first()
    if key is None:
        raise DomainError("unknown_key", f"The custodian holds no usable key {fingerprint}.")
    return private.load_sealed_private_key(key.sealed_path, _kek())


GRANT_SPENT = ["used", "query_sha256", "answer"]


def comparisons_answer(*, request_ref: str, query: dict[str, Any]) -> AnswerJSON:
    """Answer a blinded comparison query within the request's budget; only signs come back.

    The same query presented again (a redelivered task) gets the same answer without spending budget:
    it reveals nothing new. A different query for the same request spends budget, so a worker cannot
    ask more than the manual's number of comparisons in total. Refusals raise.
    """
    with transaction.atomic():
        grant = ComparisonGrant.objects.select_for_update().filter(request_ref=request_ref).first()
        answer, event = _answer(grant, request_ref, query)
        assert grant is not None  # _answer refuses a missing grant
        grant.save(update_fields=GRANT_SPENT)
        audit_record_many([event])
    return answer


def comparisons_answer_many(*, queries: list[tuple[str, dict[str, Any]]]) -> dict[str, AnswerJSON | dict[str, str]]:
    """:func:`comparisons_answer` for a chunk of requests in one transaction. A refused query gets
    ``{"error": <code>}`` in place of its answer (recorded in the audit log) and does not stop the rest."""
    answers: dict[str, AnswerJSON | dict[str, str]] = {}
    events: list[Event] = []
    with transaction.atomic():
        refs = [ref for ref, _ in queries]
        grants = {g.request_ref: g for g in ComparisonGrant.objects.select_for_update().filter(request_ref__in=refs)}
        spent: list[ComparisonGrant] = []
        for ref, query in queries:
            try:
                answers[ref], event = _answer(grants.get(ref), ref, query)
                if not event.detail or not event.detail["replay"]:
                    spent.append(grants[ref])
            except (SecureComputeError, DomainError, ValueError, TypeError, KeyError) as exc:  # a malformed query
                code = getattr(exc, "code", None) or exc.__class__.__name__
                answers[ref] = {"error": code}
                event = Event("custodian.refuse", "custodian", "underwriting_request", ref, {"reason": code})
            events.append(event)
        if len(spent) == 1:
            spent[0].save(update_fields=GRANT_SPENT)  # the usual case on an idle stack: a plain UPDATE
        elif spent:
            ComparisonGrant.objects.bulk_update(spent, GRANT_SPENT)
        audit_record_many(events)
    refused = sum(1 for answer in answers.values() if "error" in answer)
    logger.info("custodian answered %d queries, refused %d", len(answers) - refused, refused)
    return answers


def _answer(grant: ComparisonGrant | None, request_ref: str, query: dict[str, Any]) -> tuple[AnswerJSON, Event]:
    """The answer to one query under its (locked) grant, spending budget unless it is a replay; the caller
    saves the grant's ``GRANT_SPENT`` fields."""
    parsed = ComparisonQuery.from_dict(query)
    if parsed.request_id != request_ref:
        raise ProtocolError("the query names another request")
    if grant is None:
        raise BudgetExceededError("no comparison budget was granted for this request")
    digest = hashlib.sha256(repr(sorted(parsed.to_dict().items())).encode()).hexdigest()
    replay = grant.query_sha256 == digest and grant.answer is not None
    if replay:
        answer: AnswerJSON = grant.answer  # type: ignore[assignment]
    else:
        answer = private.answer_comparisons(_private_key(parsed.key_id), parsed, grant.budget - grant.used).to_dict()
        grant.used, grant.query_sha256, grant.answer = grant.used + parsed.comparisons, digest, answer
    # Every answer is recorded (signs never are): which request, how many comparisons, under which key.
    detail = {"comparisons": parsed.comparisons, "key_id": parsed.key_id, "replay": replay}
    return answer, Event("custodian.answer", "custodian", "underwriting_request", request_ref, detail)


@shared_task(name="datadomain.custodian.answer_comparisons_batch", acks_late=True, ignore_result=True)
def answer_comparisons_batch(queries: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The custodian queue's task: a chunk of queries. Its return value goes to the ``link`` callback only."""
    return comparisons_answer_many(queries=[(ref, query) for ref, query in queries])


@shared_task(name="datadomain.custodian.rotate_keypair", acks_late=True, ignore_result=True)
def rotate_keypair(actor: str = "", approval_id: int | None = None) -> str:
    """A rotation approved in the admin (four-eyes); stored vectors are re-encrypted by
    ``rotate_keypair --reencrypt`` or the next precompute, and old keys retire once nothing uses them."""
    return keypair_create(bits=int(settings.PAILLIER_KEY_BITS), actor=actor, approval_id=approval_id).key_id


@shared_task(name="datadomain.custodian.retire_key", acks_late=True, ignore_result=True)
def retire_key(key_id: str, actor: str = "") -> None:
    """A retirement asked for in the admin; refused again here if a ciphertext came to use the key meanwhile."""
    key_retire(key_id=key_id, actor=actor)
