"""Writing, chaining and verifying the audit log.

``audit_record`` is the hot path: one INSERT in the caller's transaction, no lock, no read of the chain
head, so concurrent writers never wait for each other. ``audit_chain_pending`` (Celery beat, every
``AUDIT_CHAIN_SECONDS``, on the domain queue) links the new rows in id order under one lock:

    hash = HMAC-SHA256(AUDIT_KEY, prev_hash || canonical JSON of the row, chain_seq included)

Only the holder of AUDIT_KEY can compute a hash, so an edit, a deletion, a reordering or an insertion
anywhere before the head breaks the chain at that entry. ``audit_anchor_export`` (beat, every
``AUDIT_ANCHOR_SECONDS``) signs the head into a file written once (``audit.anchors``), which also catches
a tail cut off or rewritten before that anchor.

``audit_chain_verify`` (``verify_audit_chain``, the admin's "Verify the chain", beat) only reads: it
never links what is pending, since linking on the verifier's word would seal whatever was inserted since.
An entry still unchained ``AUDIT_CHAIN_GRACE_SECONDS`` after it was written is itself a failure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, DateTimeField, DurationField, ExpressionWrapper, Min, Q, Value
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from audit import anchors
from audit.anchors import Anchor, AnchorError
from audit.models import AuditEntry, AuditEntryQuerySet

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
CHAIN_BATCH = 500
# pg_advisory_xact_lock key of the chainer: any constant, the same in every process.
CHAIN_LOCK_KEY = 0x5A_0D_17_C4
# What an entry's hash covers, in the order of ``Row``.
CONTENT = ("pk", "at", "action", "actor", "target_type", "target_id", "detail")
Row = tuple[int, datetime, str, str, str, str, Any]


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


# The columns an audit entry is written with (the chain's columns are filled later by the chainer), for
# the statements that insert entries by hand: audit_insert_sql and a request's transition on PostgreSQL.
AUDIT_INSERT_COLUMNS = '"at", "action", "actor", "target_type", "target_id", "detail"'


def audit_insert_sql(events: Iterable[Event]) -> tuple[str, list[Any]]:
    """The INSERT :func:`audit_record_many` runs, as SQL and parameters, for a caller that makes it part
    of one statement with its own writes (PostgreSQL: ``WITH ... AS (UPDATE ...) INSERT ...``). The
    database stamps each row's time, as for any insert."""
    entries = [event.entry() for event in events]
    columns = AUDIT_INSERT_COLUMNS
    rows = ", ".join(["(%s, %s, %s, %s, %s, %s::jsonb)"] * len(entries))
    params: list[Any] = []
    now = timezone.now()
    for entry in entries:
        params += [now, entry.action, entry.actor, entry.target_type, entry.target_id, json.dumps(entry.detail)]
    return f'INSERT INTO "{AuditEntry._meta.db_table}" ({columns}) VALUES {rows}', params  # noqa: S608 # nosec B608 - names from the model, values bound


def subject_ref(subject_key: str) -> str:
    """What the audit log keeps of a subject: the first 12 hex digits of its pseudonymous key."""
    return subject_key[:12]


# --- chaining --------------------------------------------------------------------------------------


def _key() -> bytes:
    key = str(settings.AUDIT_KEY)
    if not key:
        raise RuntimeError("AUDIT_KEY is empty: the audit chain cannot be computed.")
    return key.encode()


def _canonical(row: Row, chain_seq: int) -> bytes:
    pk, at, action, actor, target_type, target_id, detail = row
    fields = {
        "id": pk,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "action": action,
        "actor": actor,
        "target_type": target_type,
        "target_id": target_id,
        "detail": detail,
        "chain_seq": chain_seq,
    }
    try:
        return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        # orjson refuses integers beyond 64 bits and deep nesting, which a raw INSERT can store; such a
        # row must still be chained, or it would stop every row behind it. Only rows orjson refuses take
        # this path, so no hash computed before changes.
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8", "surrogatepass")


def _row(entry: AuditEntry) -> Row:
    return (entry.pk, entry.at, entry.action, entry.actor, entry.target_type, entry.target_id, entry.detail)


def canonical(entry: AuditEntry, chain_seq: int) -> bytes:
    """The bytes an entry's hash covers: every column but the hashes, as sorted-key JSON."""
    return _canonical(_row(entry), chain_seq)


def _row_hash(key: bytes, prev_hash: str, row: Row, chain_seq: int) -> str:
    return hmac.new(key, prev_hash.encode() + _canonical(row, chain_seq), hashlib.sha256).hexdigest()


def entry_hash(key: bytes, prev_hash: str, entry: AuditEntry, chain_seq: int) -> str:
    return _row_hash(key, prev_hash, _row(entry), chain_seq)


def _lock_chain() -> None:
    """Serialise chainers (never writers). SQLite serialises write transactions by itself, and the unique
    chain_seq stops two chainers from ever forking the chain."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])


def _head() -> tuple[int, str]:
    head = AuditEntry.objects.filter(chain_seq__isnull=False).order_by("-chain_seq").values_list("chain_seq", "hash")
    found = head.first()
    return (int(found[0] or 0), found[1] or "") if found else (0, GENESIS)


def _chain_batch(key: bytes) -> int:
    with transaction.atomic():
        _lock_chain()
        seq, prev = _head()
        rows: list[Row] = list(_unchained().order_by("id").values_list(*CONTENT)[:CHAIN_BATCH])
        if len(rows) > 1 and connection.vendor == "postgresql" and _chain_at_once(key, rows, seq, prev):
            return len(rows)
        for row in rows:
            digest = _row_hash(key, prev, row, seq + 1)
            # 0 rows: the entry's chain fields are no longer NULL (only a database without the guard lets
            # that happen). It is left out, and verification reports it once the grace period is over.
            if AuditEntry.objects.filter(pk=row[0]).chain_set(chain_seq=seq + 1, prev_hash=prev, hash=digest):
                seq, prev = seq + 1, digest
    return len(rows)


def _chain_at_once(key: bytes, rows: list[Row], seq: int, prev: str) -> bool:
    """Link ``rows`` (read under the chain lock, in id order) with one UPDATE on PostgreSQL instead of one
    per row. All or nothing: when any row's chain fields are no longer NULL the update is undone and False
    returned, for ``_chain_batch`` to link them one at a time and leave that row out."""
    params: list[Any] = []
    for row in rows:
        digest = _row_hash(key, prev, row, seq + 1)
        params += [row[0], seq + 1, prev, digest]
        seq, prev = seq + 1, digest
    table = AuditEntry._meta.db_table
    values = ", ".join(["(%s::bigint, %s::bigint, %s, %s)"] * len(rows))
    sql = (
        f'UPDATE "{table}" a SET chain_seq = v.seq, prev_hash = v.prev, hash = v.digest'  # noqa: S608 # nosec B608 - names from the model, values bound
        f" FROM (VALUES {values}) AS v(id, seq, prev, digest)"
        " WHERE a.id = v.id AND a.chain_seq IS NULL AND a.hash IS NULL"
    )
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            if cursor.rowcount != len(rows):
                raise _ChainMovedError
    except _ChainMovedError:
        return False
    return True


class _ChainMovedError(Exception):
    """An entry read as unchained was chained meanwhile (only possible without the database's guard)."""


def _unchained() -> AuditEntryQuerySet:
    return AuditEntry.objects.filter(chain_seq__isnull=True, prev_hash__isnull=True, hash__isnull=True)


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
    """What verification found. ``problem`` (in the active language) is empty when everything holds."""

    checked: int
    head_seq: int
    head_hash: str
    pending: int = 0  # entries not linked yet, all within the grace period
    overdue: int = 0  # entries not linked within the grace period: a failure
    anchors: int = 0
    latest_anchor: Anchor | None = None
    broken_seq: int | None = None
    broken_id: int | None = None
    problem: str = ""

    @property
    def intact(self) -> bool:
        return not self.problem


@dataclass
class _Walk:
    checked: int = 0
    head_hash: str = GENESIS
    first_at: datetime | None = None
    broken_seq: int | None = None
    broken_id: int | None = None
    problem: str = ""
    anchored: dict[int, list[Anchor]] = field(default_factory=lambda: defaultdict(list))


def _entry_problem(key: bytes, row: Row, found: tuple[int, str | None, str | None], expected: int, prev: str) -> str:
    seq, prev_hash, digest = found
    if seq != expected:
        return _("expected position %(expected)s, found %(found)s (an entry is missing or was moved)") % {
            "expected": expected,
            "found": seq,
        }
    if prev_hash != prev:
        return _("its previous-hash does not match the entry before it")
    if not hmac.compare_digest(digest or "", _row_hash(key, prev, row, expected)):
        return _("its content does not match its hash")
    return ""


def _anchor_problem(anchored: list[Anchor], digest: str) -> str:
    """'' when every anchor of this position recorded the hash it has now."""
    for anchor in anchored:
        if not hmac.compare_digest(anchor.hash, digest):
            return _("it no longer has the hash anchor %(anchor)s recorded for it (the chain was rewritten)") % {
                "anchor": anchor.name
            }
    return ""


def _walk(key: bytes, walk: _Walk) -> None:
    """Follow the chain from the start, checking each link and each anchored position; stop at the first
    broken entry. Reads plain tuples, not model instances: the chain can hold millions of entries."""
    if problem := _anchor_problem(walk.anchored.get(0, []), GENESIS):
        walk.broken_seq, walk.problem = 0, problem
        return
    chained = AuditEntry.objects.filter(chain_seq__isnull=False).order_by("chain_seq")
    prev = GENESIS
    for *content, seq, prev_hash, digest in chained.values_list(*CONTENT, "chain_seq", "prev_hash", "hash").iterator(
        chunk_size=2000
    ):
        row: Row = tuple(content)
        expected = walk.checked + 1
        problem = _entry_problem(key, row, (seq, prev_hash, digest), expected, prev) or _anchor_problem(
            walk.anchored.get(expected, []), digest or ""
        )
        if problem:
            walk.broken_seq, walk.broken_id, walk.problem = seq, row[0], problem
            return
        walk.first_at = walk.first_at or row[1]
        walk.checked, prev = expected, digest or ""
    walk.head_hash = prev


def _read_anchors(extra: Iterable[Path]) -> list[Anchor]:
    folder = Path(settings.AUDIT_ANCHOR_DIR)
    locations = [*([folder] if folder.is_dir() else []), *extra]
    paths = anchors.anchor_paths(locations)
    keys = anchors.public_keys() if paths else {}
    return [anchors.anchor_read(path, keys) for path in paths]


def _tail_problem(walk: _Walk, found: list[Anchor]) -> str:
    """An anchor beyond the end of an otherwise intact chain: entries were cut off its tail."""
    beyond = [anchor for anchor in found if anchor.chain_seq > walk.checked]
    if not beyond:
        return ""
    last = max(beyond, key=lambda anchor: anchor.chain_seq)
    return _(
        "Anchor %(anchor)s recorded the chain at position %(anchored)s, but it now ends at %(head)s "
        "(entries were deleted from its tail)."
    ) % {"anchor": last.name, "anchored": last.chain_seq, "head": walk.checked}


def _stale_problem(walk: _Walk, latest: Anchor | None) -> str:
    """No signed anchor for longer than two export intervals: anchors stopped, or were removed."""
    since = latest.exported_at if latest else walk.first_at
    bound = timedelta(seconds=2 * float(settings.AUDIT_ANCHOR_SECONDS))
    if since is None or timezone.now() - since <= bound:
        return ""
    return _(
        "No signed anchor was written since %(since)s, though one is due every %(seconds)s seconds "
        "(the anchor export is not running, or recent anchors were removed)."
    ) % {
        "since": since.astimezone(UTC).isoformat(timespec="seconds"),
        "seconds": f"{float(settings.AUDIT_ANCHOR_SECONDS):g}",
    }


def _unchained_counts() -> dict[str, Any]:
    grace = timedelta(seconds=float(settings.AUDIT_CHAIN_GRACE_SECONDS))
    # The database's clock, the one that stamped ``at`` (migration 0004).
    cutoff = ExpressionWrapper(Now() - Value(grace, output_field=DurationField()), output_field=DateTimeField())
    late = Q(at__lt=cutoff)
    return AuditEntry.objects.filter(chain_seq__isnull=True).aggregate(
        pending=Count("id"), overdue=Count("id", filter=late), oldest=Min("id", filter=late)
    )


@contextmanager
def _read_only_snapshot() -> Iterator[None]:
    """On PostgreSQL, verification runs in a REPEATABLE READ, READ ONLY transaction of its own: one
    consistent view of the chain, the pending entries and the clock, and the database refuses any write.
    Inside a caller's transaction (a test's), it reads in that one."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def audit_chain_verify(*, anchor_paths: Iterable[Path] = ()) -> ChainReport:
    """Check the whole chain, the anchors in ``AUDIT_ANCHOR_DIR`` (and ``anchor_paths``) and the entries
    not linked yet. Reads only: nothing is chained, nothing written. The first problem found is reported,
    in this order: an anchor that cannot be trusted, a broken or rewritten entry, a cut tail, entries left
    unchained past the grace period, anchors that stopped."""
    key = _key()
    with _read_only_snapshot():
        walk = _Walk()
        try:
            found = _read_anchors(anchor_paths)
        except AnchorError as exc:
            found, walk.problem = [], str(exc)
        for anchor in found:
            walk.anchored[anchor.chain_seq].append(anchor)
        if not walk.problem:
            _walk(key, walk)
        counts = _unchained_counts()
    signed = [anchor for anchor in found if anchor.signed]
    latest = max(signed, key=lambda anchor: anchor.exported_at) if signed else None
    problem = _located(walk) or _tail_problem(walk, found) or _overdue_problem(counts) or _stale_problem(walk, latest)
    return ChainReport(
        checked=walk.checked,
        head_seq=walk.checked,
        head_hash=walk.head_hash if walk.broken_seq is None else "",
        pending=counts["pending"] - counts["overdue"],
        overdue=counts["overdue"],
        anchors=len(found),
        latest_anchor=latest,
        broken_seq=walk.broken_seq,
        broken_id=walk.broken_id if walk.broken_seq is not None else counts["oldest"],
        problem=problem,
    )


def _located(walk: _Walk) -> str:
    if walk.broken_seq is None:
        return walk.problem
    return _(
        "The chain is broken at entry %(seq)s (id %(id)s): %(problem)s. The %(checked)s entries before it are intact."
    ) % {
        "seq": walk.broken_seq,
        "id": walk.broken_id if walk.broken_id is not None else "-",
        "problem": walk.problem,
        "checked": walk.checked,
    }


def _overdue_problem(counts: dict[str, Any]) -> str:
    if not counts["overdue"]:
        return ""
    return ngettext(
        "%(count)s entry written more than %(seconds)s seconds ago is not chained (oldest: id %(id)s): the "
        "chainer is not running, or the entry was unlinked.",
        "%(count)s entries written more than %(seconds)s seconds ago are not chained (oldest: id %(id)s): the "
        "chainer is not running, or entries were unlinked.",
        counts["overdue"],
    ) % {
        "count": counts["overdue"],
        "seconds": f"{float(settings.AUDIT_CHAIN_GRACE_SECONDS):g}",
        "id": counts["oldest"],
    }


# --- anchors ---------------------------------------------------------------------------------------


def audit_anchor_export(*, out_dir: Path | None = None) -> Path:
    """Sign the chain head (position, hash, time) into a new file in ``AUDIT_ANCHOR_DIR`` (or ``out_dir``),
    never overwriting one. Reads the chain and writes nothing to the database: the chainer links pending
    entries, an anchor seals what is linked."""
    key = anchors.signing_key()
    seq, digest = _head()
    now = timezone.now()
    data = anchors.anchor_document(chain_seq=seq, head_hash=digest, exported_at=now, key=key)
    name = f"audit-anchor-{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{seq}.json"
    path = anchors.write_once(Path(out_dir or settings.AUDIT_ANCHOR_DIR), name, data)
    # The same anchor in the logs, which are shipped off the host: a second copy out of the database's reach.
    logger.info("audit anchor %s: chain position %s, head %s", name, seq, digest)
    return path
