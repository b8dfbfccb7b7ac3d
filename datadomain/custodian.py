"""The key custodian: the only module of the project allowed to import ``securecompute.private``.

It runs in its own Celery worker on the ``custodian`` queue (scripts/workers.sh, CELERY_TASK_ROUTES);
in production it is the only container that mounts CUSTODIAN_KEY_DIR and knows CUSTODIAN_KEK.
It learns nothing but signs: a scoring worker sends blinded, shuffled, sign-flipped comparisons
(securecompute.tiering), tagged with the request's MAC (securecompute.binding), and the custodian answers
one such query per request, under the single-use grant the domain issued when it extracted the request's
features (ComparisonGrant). Its database role reads grants and public keys, never records, identities,
requests, tiers or the worker's tiering state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import phe
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Field
from django.utils import timezone

from audit.approvals import Staff, approval_claim
from audit.models import Approval
from audit.services import Event, audit_insert_sql, audit_record, audit_record_many
from config.celery import task
from datadomain import selectors
from datadomain.errors import DomainError
from datadomain.models import ComparisonGrant, CustodianKey, EncryptedFeatureVector
from securecompute import private
from securecompute.binding import GrantTerms, keyed_signs, random_signs
from securecompute.errors import SecureComputeError, WrongKekError
from securecompute.keys import generate_keypair, key_id, public_key_from_json, public_key_to_json
from securecompute.protocol import (
    MAX_COMPARISONS,
    AnswerJSON,
    ComparisonAnswer,
    ComparisonQuery,
    PackedQuery,
    is_packed,
)

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


def keys_retire_unused() -> list[str]:
    """Retire ``retiring`` keys that no stored ciphertext and no live grant (a request under way) uses any
    more, and delete their sealed files."""
    retired = []
    retiring = CustodianKey.objects.filter(status=CustodianKey.Status.RETIRING).values_list("key_id", flat=True)
    live = _live_grants()
    for fingerprint in retiring:
        in_use = live.filter(key_id=fingerprint).exists()
        if not in_use and not EncryptedFeatureVector.objects.filter(key_id=fingerprint).exists():
            key_retire(key_id=fingerprint)
            retired.append(fingerprint)
    return retired


def _live_grants() -> Any:
    """Grants whose query may still arrive or be answered again: not yet answered, not expired."""
    return ComparisonGrant.objects.exclude(status=ComparisonGrant.Status.ANSWERED).filter(expires_at__gt=timezone.now())


@transaction.atomic
def key_retire(*, key_id: str, actor: str = "") -> None:
    """Retire one ``retiring`` key that no stored ciphertext uses, and delete its sealed private key
    (``DomainError`` with the reason otherwise). New ciphertexts are only ever made under the active key,
    so a key found unused here stays unused."""
    refusal = selectors.key_retire_refusal(key_id)
    if refusal is not None:
        raise refusal
    if _live_grants().filter(key_id=key_id).exists():  # a request under way still needs the key's answer
        raise DomainError("key_in_use", "Requests under way still use this key: retire it once they are answered.")
    key = CustodianKey.objects.get(key_id=key_id)
    if not CustodianKey.objects.filter(pk=key.pk, status=CustodianKey.Status.RETIRING).update(
        status=CustodianKey.Status.RETIRED
    ):
        return  # retired meanwhile by another run
    audit_record(action="custodian.key_retire", actor=actor, target_type="custodian_key", target_id=key_id)
    if key.sealed_path:
        Path(key.sealed_path).unlink(missing_ok=True)
    _private_key.forget(key_id)
    private.forget_private_key(int(public_key_from_json(key.public_key_json).n))


class _HeldKeys:
    """The private keys this process has unsealed, by fingerprint, least recently used first.

    At most ``size`` (the active key and those being rotated out), and never a retired one: a key leaves
    with its CRT values (``private.forget_private_key``) when evicted, when :func:`key_retire` retires it
    in this process, or when its sealed file is gone, which is how a retirement in another process reaches
    this one (it deletes the file; checking costs one ``stat`` per use and no query).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._held: OrderedDict[str, tuple[Path, phe.PaillierPrivateKey]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, fingerprint: str) -> phe.PaillierPrivateKey:
        with self._lock:
            held = self._held.get(fingerprint)
            if held is not None and held[0].exists():
                self._held.move_to_end(fingerprint)
                return held[1]
            self._drop(fingerprint)
            key = CustodianKey.objects.filter(key_id=fingerprint).exclude(status=CustodianKey.Status.RETIRED).first()
            if key is None:
                raise DomainError("unknown_key", f"The custodian holds no usable key {fingerprint}.")
            path = Path(key.sealed_path)
            private_key = private.load_sealed_private_key(path, _kek())
            self._held[fingerprint] = (path, private_key)
            while len(self._held) > self.size:
                self._drop(next(iter(self._held)))
            return private_key

    def __contains__(self, fingerprint: object) -> bool:
        return fingerprint in self._held

    def forget(self, fingerprint: str) -> None:
        with self._lock:
            self._drop(fingerprint)

    def cache_clear(self) -> None:
        with self._lock:
            for fingerprint in list(self._held):
                self._drop(fingerprint)

    def _drop(self, fingerprint: str) -> None:
        held = self._held.pop(fingerprint, None)
        if held is not None:
            private.forget_private_key(int(held[1].public_key.n))


_private_key = _HeldKeys(size=4)


class GrantUse(StrEnum):
    """What a query did with its request's grant, the one decryption the grant allows."""

    SPENT = "spent"  # the grant was issued until now: this query spent it
    RERUN = "rerun"  # spent on this same query by a run that died before it answered: decrypted again
    STORED = "stored"  # answered before, for this same query: the stored answer again, nothing decrypted
    REFUSED = "refused"  # no grant, or a grant spent on another query: coins, nothing decrypted


# The grant was spent on this very query: its answer is stored on the grant once it is made.
_OWNED = (GrantUse.SPENT, GrantUse.RERUN)
# The same query again (audited as a replay for staff).
_REPLAYS = (GrantUse.RERUN, GrantUse.STORED)


@dataclass(frozen=True)
class Reply:
    """The custodian's outcome for one query: the answer sent back (signs, the same shape whatever happened),
    what the query did with its grant, and the check it failed ("" when it passed)."""

    ref: str
    answer: AnswerJSON
    use: GrantUse
    refusal: str = ""


@dataclass
class _Plan:
    """What to do with one query: decrypt it under ``grant``, return ``stored`` (a redelivery of an answered
    query), or answer random signs for ``refusal``."""

    ref: str
    query: dict[str, Any]
    grant: ComparisonGrant | None
    digest: str  # the query's SHA-256, which its grant is spent on
    refusal: str = ""
    stored: AnswerJSON | None = None
    use: GrantUse = GrantUse.REFUSED
    answer: AnswerJSON | None = None  # a packed query's answer for this request, once it passed


def comparisons_answer_many(*, queries: list[tuple[str, dict[str, Any]]]) -> dict[str, Reply]:
    """Answer a chunk of tagged comparison queries (request ref, query) with signs only.

    1. Each query's grant is spent, and that is committed, before anything is decrypted: a grant answers
       one query, whatever happens afterwards (a crash here leaves it spent; the same query sent again is
       then decrypted again, which tells nobody anything new).
    2. Each query is decrypted and checked against its grant (securecompute.private.answer_comparisons).
    3. The answers are stored on their grants and audited: ``custodian.answer`` for a query that passed,
       ``custodian.misuse`` with the reason for one that did not (no grant, expired, already spent on
       another query, malformed, wrong shape or key, failed tag). Bureau staff see misuse as flags.

    Every query gets an answer of the same shape, never an error: a refusal is answered with coins keyed by
    the grant's MAC key and the query (the same query, the same coins), so a worker learns nothing from
    whether its query passed. Only a private key that cannot be opened fails the chunk, before anything is
    spent. Returns each query's :class:`Reply`, by request ref.
    """
    entries = _members(queries)
    plans = _grants_spend(entries)
    outcomes: list[tuple[_Plan, AnswerJSON, str]] = []
    packs: dict[int, list[_Plan]] = {}
    for plan in plans:
        if is_packed(plan.query):
            packs.setdefault(id(plan.query), []).append(plan)
        elif plan.stored is not None:
            outcomes.append((plan, plan.stored, ""))
        else:
            outcomes.append((plan, *_answer(plan)))
    for members in packs.values():
        outcomes += _answer_pack(members)
    _answers_record(outcomes)
    refused = sum(1 for _, _, reason in outcomes if reason)
    logger.info("custodian answered %d queries (%d failed a check)", len(outcomes), refused)
    return {plan.ref: Reply(plan.ref, answer, plan.use, reason) for plan, answer, reason in outcomes}


def _grants_spend(queries: list[tuple[str, dict[str, Any]]]) -> list[_Plan]:
    """Lock the chunk's grants and spend each on its query, in one committed transaction.

    The private keys the grants name are opened first, inside it: a key that cannot be opened (a wrong KEK
    after a rotation, a missing file) fails the task with nothing spent, to be sent again by the sweeper
    once the custodian is fixed. It says nothing about any plaintext, so it must not be answered with coins,
    which an honest worker could read as a tier."""
    with transaction.atomic():
        refs = [ref for ref, _ in queries]
        grants = {g.request_ref: g for g in ComparisonGrant.objects.select_for_update().filter(request_ref__in=refs)}
        for fingerprint in {grant.key_id for grant in grants.values()}:
            _private_key(fingerprint)
        now = timezone.now()
        plans, spent = [], []
        digests: dict[int, str] = {}  # a packed query stands for many requests: hash it once
        for ref, query in queries:
            grant = grants.get(ref)
            digest = digests[id(query)] = digests.get(id(query)) or _digest(query)
            plan = _Plan(ref, query, grant, digest)
            if grant is None:
                plan.refusal = "no_grant"
            elif grant.status == ComparisonGrant.Status.ISSUED:
                grant.status, grant.query_sha256, grant.spent_at = ComparisonGrant.Status.SPENT, digest, now
                plan.use = GrantUse.SPENT
                spent.append(grant)
            elif grant.query_sha256 != digest:
                plan.refusal = "grant_spent"
            elif grant.status == ComparisonGrant.Status.ANSWERED:
                plan.stored, plan.use = grant.answer, GrantUse.STORED
            else:
                plan.use = GrantUse.RERUN
            if plan.use in _OWNED and grant is not None and grant.spent_at and grant.spent_at >= grant.expires_at:
                plan.refusal = "expired"  # spent only after it had expired: never decrypted
            plans.append(plan)
        _grants_update(spent, ["status", "query_sha256", "spent_at"])
    return plans


def _grants_update(grants: list[ComparisonGrant], fields: list[str], *, events: list[Event] | None = None) -> None:
    """Write ``fields`` of ``grants``, and record ``events`` if given. On PostgreSQL one statement: an
    ``UPDATE ... FROM (VALUES ...)`` for the lot, with the audit INSERT in the same statement. Elsewhere
    one plain UPDATE for a single grant, one ``bulk_update`` (a CASE per field) for a chunk, and the
    events' INSERT."""
    if grants and connection.vendor == "postgresql":
        sql, params = _grants_update_sql(grants, fields)
        if events:
            insert, more = audit_insert_sql(events)
            sql, params = f"WITH updated AS ({sql}) {insert}", [*params, *more]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        return
    if len(grants) == 1:
        ComparisonGrant.objects.filter(pk=grants[0].pk).update(**{name: getattr(grants[0], name) for name in fields})
    elif grants:
        ComparisonGrant.objects.bulk_update(grants, fields)
    if events:
        audit_record_many(events)


def _grants_update_sql(grants: list[ComparisonGrant], fields: list[str]) -> tuple[str, list[Any]]:
    columns: list[Field[Any, Any]] = []
    for name in fields:
        field = ComparisonGrant._meta.get_field(name)
        assert isinstance(field, Field)  # a concrete column
        assert field.column
        columns.append(field)
    row = "(%s, " + ", ".join(f"%s::{field.db_type(connection)}" for field in columns) + ")"
    names = ", ".join(f'"{field.column}"' for field in columns)
    sets = ", ".join(f'"{field.column}" = v."{field.column}"' for field in columns)
    params: list[Any] = []
    for grant in grants:
        params.append(grant.pk)
        params += [field.get_db_prep_save(getattr(grant, field.attname), connection) for field in columns]
    table = ComparisonGrant._meta.db_table
    values = ", ".join([row] * len(grants))
    return f'UPDATE "{table}" g SET {sets} FROM (VALUES {values}) AS v(id, {names}) WHERE g.id = v.id', params  # noqa: S608 # nosec B608 - names from the model, values bound


def _answer(plan: _Plan) -> tuple[AnswerJSON, str]:
    """Decrypt and check one query (``plan.refusal`` already set: coins); returns the answer and why it
    failed a check ("" when it passed)."""
    count = plan.grant.comparisons if plan.grant else _claimed_count(plan.query)
    if not plan.refusal:
        assert plan.grant is not None
        try:
            parsed = ComparisonQuery.from_dict(plan.query)
            terms = GrantTerms(plan.ref, plan.grant.key_id, count, plan.grant.slot_bits, int(plan.grant.mac_key, 16))
            verdict = private.answer_comparisons(_private_key(plan.grant.key_id), parsed, terms)
            if verdict.valid:
                return verdict.answer.to_dict(), ""
            plan.refusal = verdict.reason
        except (SecureComputeError, ValueError, TypeError, KeyError, AttributeError) as exc:
            plan.refusal = getattr(exc, "code", None) or "malformed"
    return ComparisonAnswer(plan.ref, tuple(_refusal_signs(plan, count))).to_dict(), plan.refusal


def _members(queries: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The queries as (request ref, query): a packed query stands once for each request it names, so that
    each request's grant is charged for it (one grant, one request, whatever the packing)."""
    entries: list[tuple[str, dict[str, Any]]] = []
    for ref, query in queries:
        if is_packed(query):
            names = query.get("requests")
            members = [r for r in names if isinstance(r, str)] if isinstance(names, list) else []
            entries += [(member, query) for member in members] or [(ref, {**query, "requests": []})]
        else:
            entries.append((ref, query))
    return entries


def _answer_pack(members: list[_Plan]) -> list[tuple[_Plan, AnswerJSON, str]]:
    """Answer every request of one packed query: all from their stored answers (a redelivery), all from one
    decryption when every grant fits, or all with coins when any does not (a grant missing, spent on another
    query, expired, or the pack failing a check): a packed query is answered whole or not at all."""
    if all(plan.stored is not None for plan in members):
        return [(plan, plan.stored, "") for plan in members if plan.stored is not None]
    reason = next((plan.refusal for plan in members if plan.refusal), "")
    if not reason and any(plan.stored is not None for plan in members):
        reason = "grant_spent"  # part of the pack was answered before, under this very query: never again
    if not reason:
        try:
            reason = _decrypt_pack(members)
        except (SecureComputeError, ValueError, TypeError, KeyError, AttributeError) as exc:
            reason = getattr(exc, "code", None) or "malformed"
    if not reason:
        return [(plan, plan.answer, "") for plan in members if plan.answer is not None]
    outcomes = []
    for plan in members:
        plan.refusal = plan.refusal or reason
        count = plan.grant.comparisons if plan.grant else _claimed_count(plan.query)
        outcomes.append((plan, ComparisonAnswer(plan.ref, tuple(_refusal_signs(plan, count))).to_dict(), plan.refusal))
    return outcomes


def _decrypt_pack(members: list[_Plan]) -> str:
    """Decrypt and check one packed query whose grants all fit; stores each member's answer on its plan and
    returns why the pack failed a check ("" when it passed)."""
    grants = [plan.grant for plan in members]
    if any(grant is None for grant in grants):
        return "no_grant"
    query = PackedQuery.from_dict(members[0].query)
    terms = [GrantTerms(g.request_ref, g.key_id, g.comparisons, g.slot_bits, int(g.mac_key, 16)) for g in grants if g]
    verdict = private.answer_packed(_private_key(terms[0].key_id), query, terms)
    if not verdict.valid:
        return verdict.reason
    for plan in members:
        plan.answer = verdict.answers[plan.ref].to_dict()
    return ""


def _refusal_signs(plan: _Plan, count: int) -> list[bool]:
    """The coins that answer a refused query. Under a grant they are keyed by its MAC key and the query, so
    the same query always gets the same coins, however often and however concurrently it is sent (a worker
    comparing two answers learns nothing); without a grant there is nothing to protect."""
    if plan.grant is None:
        return random_signs(count)
    mac_key = int(plan.grant.mac_key, 16)
    return keyed_signs(mac_key.to_bytes((mac_key.bit_length() + 7) // 8, "big"), plan.digest, count)


def _claimed_count(query: dict[str, Any]) -> int:
    """The number of signs to answer a query that has no grant with: what it claims, within bounds."""
    claimed = query.get("comparisons") if isinstance(query, dict) else None
    return claimed if isinstance(claimed, int) and 1 <= claimed <= MAX_COMPARISONS else 1


def _answers_record(outcomes: list[tuple[_Plan, AnswerJSON, str]]) -> None:
    """Store each new answer on its grant (so a redelivery gets it again) and audit every query."""
    events, answered = [], []
    for plan, answer, reason in outcomes:
        grant = plan.grant
        if grant is not None and plan.use in _OWNED:
            grant.status, grant.answer, grant.outcome = ComparisonGrant.Status.ANSWERED, answer, reason or "answered"
            answered.append(grant)
        count = len(answer["positive"])
        if reason:
            detail: dict[str, Any] = {"reason": reason, "comparisons": count}
            events.append(Event("custodian.misuse", "custodian", "underwriting_request", plan.ref, detail))
        else:
            detail = {"comparisons": count, "key_id": grant.key_id if grant else "", "replay": plan.use in _REPLAYS}
            events.append(Event("custodian.answer", "custodian", "underwriting_request", plan.ref, detail))
    with transaction.atomic():
        _grants_update(answered, ["status", "answer", "outcome"], events=events)


def _digest(query: object) -> str:
    return hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode()).hexdigest()


@task(name="datadomain.custodian.answer_comparisons_batch", queue="custodian", acks_late=True, ignore_result=True)
def answer_comparisons_batch(queries: list[tuple[str, dict[str, Any]]]) -> dict[str, AnswerJSON]:
    """The custodian queue's task: a chunk of queries. Its return value goes to the ``link`` callback only."""
    replies = comparisons_answer_many(queries=[(ref, query) for ref, query in queries])
    return {ref: reply.answer for ref, reply in replies.items()}


@task(name="datadomain.custodian.rotate_keypair", queue="custodian", acks_late=True, ignore_result=True)
def rotate_keypair(actor: str = "", approval_id: int | None = None) -> str:
    """A rotation approved in the admin (four-eyes). Stored vectors are re-encrypted in the data domain
    (``precompute_features --replace-retiring``), never here, and old keys retire once nothing uses them."""
    return keypair_create(bits=int(settings.PAILLIER_KEY_BITS), actor=actor, approval_id=approval_id).key_id


@task(name="datadomain.custodian.retire_key", queue="custodian", acks_late=True, ignore_result=True)
def retire_key(key_id: str, actor: str = "") -> None:
    """A retirement asked for in the admin; refused again here if a ciphertext came to use the key meanwhile."""
    key_retire(key_id=key_id, actor=actor)


# Key-encryption key (KEK) rotation -------------------------------------------------------------------------


def kek_current() -> bytes:
    """The KEK the settings give (``CUSTODIAN_KEK`` or ``CUSTODIAN_KEK_FILE``)."""
    return _kek()


def kek_parse(content: bytes) -> bytes:
    """A KEK from a file's or variable's content: 32 raw bytes, 64 hex digits or base64."""
    return private.kek_from_key_file(content)


def kek_rotate(
    *, old_kek: bytes, new_kek: bytes, actor: str, progress: Callable[[str, str], None] | None = None
) -> int:
    """Re-seal every non-retired key's sealed file from ``old_kek`` to ``new_kek``; how many were re-sealed.

    Every file is read, re-sealed and verified (opened with the new KEK) in memory before any is written,
    so a wrong old KEK or a damaged file stops the rotation with no file changed. Each file is then
    replaced atomically (``private.write_sealed_file``). A file already under the new KEK is skipped, so
    a rotation cut short (full disk, crash) is finished by running it again. ``progress(key_id, what)``
    hears about each key. The custodian must then run with ``CUSTODIAN_KEK`` set to the new KEK: until it
    restarts it keeps the keys it has unsealed, but cannot unseal another.
    """
    report = progress or (lambda fingerprint, what: None)
    plans, missing = _kek_rotate_plans(old_kek, new_kek)
    resealed, skipped = [], []
    for fingerprint, path, sealed in plans:
        if sealed is None:
            skipped.append(fingerprint)
            report(fingerprint, "already sealed under the new KEK")
            continue
        private.write_sealed_file(path, sealed)
        resealed.append(fingerprint)
        report(fingerprint, "re-sealed")
    for fingerprint in missing:
        report(fingerprint, "no sealed file (nothing to re-seal)")
    detail = {"resealed": resealed, "skipped": skipped, "missing": missing}
    audit_record(action="custodian.kek_rotate", actor=actor, target_type="custodian_key", detail=detail)
    logger.info("KEK rotation: %d key files re-sealed, %d already done", len(resealed), len(skipped))
    return len(resealed)


def _kek_rotate_plans(old_kek: bytes, new_kek: bytes) -> tuple[list[tuple[str, Path, bytes | None]], list[str]]:
    """For each non-retired key with a sealed file: its re-sealed bytes (None when already under the new
    KEK); and the keys without a file. Raises ``DomainError`` before anything is written."""
    plans: list[tuple[str, Path, bytes | None]] = []
    missing: list[str] = []
    keys = CustodianKey.objects.exclude(status=CustodianKey.Status.RETIRED).order_by("created_at", "pk")
    for fingerprint, sealed_path in keys.values_list("key_id", "sealed_path"):
        path = Path(sealed_path)
        if not sealed_path or not path.exists():
            missing.append(fingerprint)
            continue
        try:
            sealed = private.reseal_private_key(private.read_sealed_file(path), old_kek, new_kek)
        except WrongKekError:
            raise DomainError(
                "wrong_old_kek",
                f"Key {fingerprint} is sealed under neither the current KEK nor the new one; no file was changed.",
            ) from None
        except SecureComputeError as exc:
            raise DomainError("kek_rotate_refused", f"Key {fingerprint}: {exc}; no file was changed.") from exc
        plans.append((fingerprint, path, sealed))
    return plans, missing
