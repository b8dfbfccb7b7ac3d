"""Writing, chaining and verifying the audit log.

``audit_record`` is the hot path: one INSERT in the caller's transaction, no lock, no read of the chain
head, so concurrent writers never wait for each other. ``audit_chain_pending`` (Celery beat, every few
seconds, and before each verification) links the new rows in id order under one lock:

    hash = HMAC-SHA256(AUDIT_KEY, prev_hash || canonical JSON of the row, chain_seq included)

Only the holder of AUDIT_KEY can compute a hash, so an edit, a deletion, a reordering or an insertion
anywhere before the head breaks the chain at that entry; the daily anchor (the head exported to a
file kept elsewhere) also catches a truncated tail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any, TypedDict

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditEntry

GENESIS = "0" * 64
CHAIN_BATCH = 500
# pg_advisory_xact_lock key of the chainer: any constant, the same in every process.
CHAIN_LOCK_KEY = 0x5A_0D_17_C4


@dataclass(frozen=True)
class Event:
    action: str
    actor: str = ""
    target_type: str = ""
    target_id: str = ""
    detail: dict[str, Any] | None = None

    def entry(self) -> AuditEntry:
        return AuditEntry(
            action=self.action,
            actor=self.actor[:200],
            target_type=self.target_type,
            target_id=str(self.target_id)[:200],
            detail=self.detail or {},
        )


def audit_record(
    *, action: str, actor: str = "", target_type: str = "", target_id: str = "", detail: dict[str, Any] | None = None
) -> None:
    """Append one event in the caller's transaction (rolled back with it). Never put a resident ID, name,
    diagnosis or score in ``detail``: use :func:`subject_ref` and request ids."""
    Event(action, actor, target_type, str(target_id), detail).entry().save(force_insert=True)


def audit_record_many(events: Iterable[Event]) -> None:
    """Several events in one INSERT."""
    AuditEntry.objects.bulk_create([event.entry() for event in events])


def subject_ref(subject_key: str) -> str:
    """What the audit log keeps of a subject: the first 12 hex digits of its pseudonymous key."""
    return subject_key[:12]


# --- chaining --------------------------------------------------------------------------------------


def _key() -> bytes:
    key = str(settings.AUDIT_KEY)
    if not key:
        raise RuntimeError("AUDIT_KEY is empty: the audit chain cannot be computed.")
    return key.encode()


def canonical(entry: AuditEntry, chain_seq: int) -> bytes:
    """The bytes an entry's hash covers: every column but the hashes, as sorted-key JSON."""
    at = entry.at.astimezone(UTC).isoformat(timespec="microseconds")
    fields = {
        "id": entry.pk,
        "at": at,
        "action": entry.action,
        "actor": entry.actor,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "detail": entry.detail,
        "chain_seq": chain_seq,
    }
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def entry_hash(key: bytes, prev_hash: str, entry: AuditEntry, chain_seq: int) -> str:
    return hmac.new(key, prev_hash.encode() + canonical(entry, chain_seq), hashlib.sha256).hexdigest()


def _lock_chain() -> None:
    """Serialise chainers (never writers). SQLite serialises write transactions by itself, and the unique
    chain_seq stops two chainers from ever forking the chain."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])


def _chain_batch(key: bytes) -> int:
    with transaction.atomic():
        _lock_chain()
        head = AuditEntry.objects.filter(chain_seq__isnull=False).order_by("-chain_seq").first()
        seq, prev = (head.chain_seq or 0, head.hash or "") if head else (0, GENESIS)
        pending = list(AuditEntry.objects.filter(chain_seq__isnull=True).order_by("id")[:CHAIN_BATCH])
        for entry in pending:
            seq += 1
            digest = entry_hash(key, prev, entry, seq)
            AuditEntry.objects.filter(pk=entry.pk).chain_set(chain_seq=seq, prev_hash=prev, hash=digest)
            prev = digest
    return len(pending)


def audit_chain_pending() -> int:
    """Link every unchained entry into the chain, in id order, in short transactions. Returns how many."""
    key = _key()
    total = 0
    while done := _chain_batch(key):
        total += done
        if done < CHAIN_BATCH:
            break
    return total


# --- verification ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    checked: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    broken_id: int | None = None
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_seq is None


def _entry_problem(key: bytes, entry: AuditEntry, expected_seq: int, prev: str) -> str:
    if entry.chain_seq != expected_seq:
        return f"expected position {expected_seq}, found {entry.chain_seq} (an entry is missing or was moved)"
    if entry.prev_hash != prev:
        return "its previous-hash does not match the entry before it"
    if not hmac.compare_digest(entry.hash or "", entry_hash(key, prev, entry, expected_seq)):
        return "its content does not match its hash"
    return ""


def audit_chain_verify() -> ChainReport:
    """Chain what is pending, then walk the whole chain from the start; stop at the first broken entry."""
    audit_chain_pending()
    key = _key()
    prev, seq = GENESIS, 0
    chained = AuditEntry.objects.filter(chain_seq__isnull=False).order_by("chain_seq")
    for entry in chained.iterator(chunk_size=2000):
        problem = _entry_problem(key, entry, seq + 1, prev)
        if problem:
            return ChainReport(seq, seq, prev, broken_seq=entry.chain_seq, broken_id=entry.pk, problem=problem)
        seq, prev = seq + 1, entry.hash or ""
    return ChainReport(checked=seq, head_seq=seq, head_hash=prev)


# --- anchors ---------------------------------------------------------------------------------------


class Anchor(TypedDict):
    chain_seq: int
    hash: str
    exported_at: str


def anchor_check(anchor: Anchor) -> str:
    """'' when the chain still holds the anchored entry with the anchored hash (the tail was not cut)."""
    entry = AuditEntry.objects.filter(chain_seq=anchor["chain_seq"]).first()
    if entry is None:
        return f"the anchored entry at position {anchor['chain_seq']} is missing (the chain was truncated)"
    if entry.hash != anchor["hash"]:
        return f"the entry at position {anchor['chain_seq']} no longer has the anchored hash"
    return ""


def audit_anchor_export(*, out_dir: Path | None = None) -> Path:
    """Write the chain head (position, hash, time) to ``AUDIT_ANCHOR_DIR/audit-anchor-<date>.json``.

    Copy these files somewhere the database's administrators cannot write: they prove the chain's
    length and head at that time."""
    audit_chain_pending()
    head = AuditEntry.objects.filter(chain_seq__isnull=False).order_by("-chain_seq").first()
    now = timezone.now()
    seq, digest = (head.chain_seq or 0, head.hash or GENESIS) if head else (0, GENESIS)
    anchor: Anchor = {"chain_seq": seq, "hash": digest, "exported_at": now.isoformat()}
    folder = Path(out_dir or settings.AUDIT_ANCHOR_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"audit-anchor-{timezone.localdate(now):%Y%m%d}.json"
    path.write_text(json.dumps(anchor, indent=2) + "\n", encoding="utf-8")
    return path


def anchor_read(path: Path) -> Anchor:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {"chain_seq": int(data["chain_seq"]), "hash": str(data["hash"]), "exported_at": str(data["exported_at"])}
