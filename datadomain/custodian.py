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
from audit.services import audit_record
from datadomain import selectors
from datadomain.errors import DomainError
from datadomain.models import ComparisonGrant, CustodianKey, EncryptedFeatureVector
from securecompute import private
from securecompute.errors import BudgetExceededError, ProtocolError
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


def comparisons_answer(*, request_ref: str, query: dict[str, Any]) -> AnswerJSON:
    """Answer a blinded comparison query within the request's budget; only signs come back.

    The same query presented again (a redelivered task) gets the same answer without spending budget:
    it reveals nothing new. A different query for the same request spends budget, so a worker cannot
    ask more than the manual's number of comparisons in total.
    """
    parsed = ComparisonQuery.from_dict(query)
    if parsed.request_id != request_ref:
        raise ProtocolError("the query names another request")
    digest = hashlib.sha256(repr(sorted(parsed.to_dict().items())).encode()).hexdigest()
    with transaction.atomic():
        grant = ComparisonGrant.objects.select_for_update().filter(request_ref=request_ref).first()
        if grant is None:
            raise BudgetExceededError("no comparison budget was granted for this request")
        if grant.query_sha256 == digest and grant.answer is not None:
            _audit_answer(request_ref, parsed, replay=True)
            return grant.answer  # type: ignore[no-any-return]
        answer = private.answer_comparisons(_private_key(parsed.key_id), parsed, grant.budget - grant.used).to_dict()
        ComparisonGrant.objects.filter(pk=grant.pk).update(
            used=grant.used + parsed.comparisons, query_sha256=digest, answer=answer
        )
        _audit_answer(request_ref, parsed, replay=False)
    logger.info("custodian answered %d comparisons for request %s", parsed.comparisons, request_ref)
    return answer


def _audit_answer(request_ref: str, query: ComparisonQuery, *, replay: bool) -> None:
    """Every answer is recorded (signs never are): which request, how many comparisons, under which key."""
    audit_record(
        action="custodian.answer",
        actor="custodian",
        target_type="underwriting_request",
        target_id=request_ref,
        detail={"comparisons": query.comparisons, "key_id": query.key_id, "replay": replay},
    )


@shared_task(name="datadomain.custodian.answer_comparisons", acks_late=True, ignore_result=True)
def answer_comparisons(request_ref: str, query: dict[str, Any]) -> AnswerJSON:
    """The custodian queue's task. Its return value goes to the worker's ``link`` callback only."""
    return comparisons_answer(request_ref=request_ref, query=query)


@shared_task(name="datadomain.custodian.rotate_keypair", acks_late=True, ignore_result=True)
def rotate_keypair(actor: str = "", approval_id: int | None = None) -> str:
    """A rotation approved in the admin (four-eyes); stored vectors are re-encrypted by
    ``rotate_keypair --reencrypt`` or the next precompute, and old keys retire once nothing uses them."""
    return keypair_create(bits=int(settings.PAILLIER_KEY_BITS), actor=actor, approval_id=approval_id).key_id


@shared_task(name="datadomain.custodian.retire_key", acks_late=True, ignore_result=True)
def retire_key(key_id: str, actor: str = "") -> None:
    """A retirement asked for in the admin; refused again here if a ciphertext came to use the key meanwhile."""
    key_retire(key_id=key_id, actor=actor)
