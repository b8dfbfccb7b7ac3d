"""Oracle and fishing detection: patterns of requests that look like probing, raised as misuse flags.

Each authorised request reveals at most the tier; what an insurer learns grows with the number of
requests about the same person. The rate limit bounds that per (insurer, subject); these flags show
bureau staff the patterns around it:

- ``subject_manuals``: one insurer scored one subject with many different manuals (triangulating the
  score from several tier boundaries);
- ``subject_insurers``: many insurers queried one subject (collusion, or a data broker behind them);
- ``burst``: many requests from one insurer, or one API key, within minutes;
- ``identity_mismatches``: many requests refused because the name did not match the resident ID, from one
  API key, or from one insurer across all its keys, portal and batches: guessing names to confirm who is
  a resident. The insurer is answered ``not_verified`` whatever failed; the flag counts the requests whose
  ``VerificationFailure`` says the name did not match.
- ``custodian_misuse``: the key custodian answered a query that failed its checks (no grant, a grant
  already spent or expired, a wrong shape or key, a failed MAC tag) with random signs. No honest scoring
  worker sends such a query: one is a sign of a compromised worker, or of a fault to investigate. Not tied
  to an insurer or subject; one open flag counts them all.

``flags_evaluate`` runs on Celery beat. It is idempotent: a condition that already has an open or
acknowledged flag updates that flag's counts instead of raising another one (a partial unique
constraint backs this up). Closing a flag settles the requests it counted: the same condition is raised
again only by requests after the closed flag's last one. Thresholds are settings (``FLAG_*``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Min, QuerySet
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import audit_record, subject_ref
from underwriting.errors import UnderwritingError
from underwriting.models import FlagKind, MisuseFlag, RequestStatus, UnderwritingRequest, VerificationFailure

# Subjects (for the long subject windows) are re-examined when they had a request this recently, so a
# beat outage shorter than this loses nothing and each run stays proportional to recent traffic.
RECENT_SUBJECTS = timedelta(days=1)


@dataclass(frozen=True)
class Condition:
    kind: str
    insurer_id: int | None
    api_key_id: int | None
    subject_key: str
    window_start: datetime
    window_end: datetime
    window_seconds: int
    count: int
    threshold: int

    @property
    def key(self) -> str:
        parts = [self.kind, f"insurer:{self.insurer_id or '-'}", f"key:{self.api_key_id or '-'}"]
        if self.subject_key:
            parts.append(f"subject:{self.subject_key}")
        return "|".join(parts)


@dataclass(frozen=True)
class EvaluationReport:
    raised: int
    updated: int


Finder = Callable[[QuerySet[UnderwritingRequest], datetime], list[Condition]]


def _subject_window() -> timedelta:
    return timedelta(days=settings.FLAG_SUBJECT_WINDOW_DAYS)


def _queried(queryset: QuerySet[UnderwritingRequest]) -> QuerySet[UnderwritingRequest]:
    """Requests that reached the subject's record: rejected ones revealed nothing about it."""
    return queryset.exclude(status=RequestStatus.REJECTED)


def _recent_subjects(queryset: QuerySet[UnderwritingRequest], now: datetime) -> QuerySet[UnderwritingRequest]:
    recent = UnderwritingRequest.objects.filter(created_at__gte=now - RECENT_SUBJECTS).values("subject_key")
    return queryset.filter(subject_key__in=recent)


def _subject_spread(
    kind: str, queryset: QuerySet[UnderwritingRequest], now: datetime, group: list[str], spread: str, threshold: int
) -> list[Condition]:
    """Groups (by subject, and per insurer when ``group`` says so) whose requests within the subject window
    name at least ``threshold`` distinct values of ``spread``."""
    window = _subject_window()
    rows = (
        _recent_subjects(_queried(queryset).filter(created_at__gte=now - window), now)
        .values(*group)
        .annotate(n=Count(spread, distinct=True), first=Min("created_at"), last=Max("created_at"))
        .filter(n__gte=threshold)
        .order_by()
    )
    return [
        Condition(kind, row.get("insurer_id"), None, row["subject_key"], row["first"], row["last"],
                  int(window.total_seconds()), row["n"], threshold)
        for row in rows
    ]  # fmt: skip


def find_subject_manuals(queryset: QuerySet[UnderwritingRequest], now: datetime) -> list[Condition]:
    return _subject_spread(FlagKind.SUBJECT_MANUALS, queryset, now, ["insurer_id", "subject_key"], "manual_slug",
                           int(settings.FLAG_SUBJECT_MANUALS))  # fmt: skip


def find_subject_insurers(queryset: QuerySet[UnderwritingRequest], now: datetime) -> list[Condition]:
    return _subject_spread(FlagKind.SUBJECT_INSURERS, queryset, now, ["subject_key"], "insurer_id",
                           int(settings.FLAG_SUBJECT_INSURERS))  # fmt: skip


def _lookback(window: timedelta) -> timedelta:
    """How far back the sliding-window scans look: every window that ended since the previous run."""
    return window + timedelta(seconds=2 * float(settings.FLAG_EVALUATE_SECONDS))


def _densest(times: list[datetime], width: timedelta) -> tuple[int, datetime, datetime]:
    """The most events within any ``width`` (two pointers over sorted times): count, first and last."""
    best, lo = (0, times[0], times[0]), 0
    for hi, moment in enumerate(times):
        while moment - times[lo] > width:
            lo += 1
        if hi - lo + 1 > best[0]:
            best = (hi - lo + 1, times[lo], moment)
    return best


def _sliding(
    kind: str, queryset: QuerySet[UnderwritingRequest], group: list[str], width: timedelta, threshold: int
) -> list[Condition]:
    """Groups with at least ``threshold`` requests within some ``width``; the SQL count picks candidates."""
    candidates = queryset.values(*group).annotate(n=Count("id")).filter(n__gte=threshold).order_by()
    found = []
    for row in candidates:
        keys = {name: row[name] for name in group}
        times = sorted(queryset.filter(**keys).values_list("created_at", flat=True))
        count, first, last = _densest(times, width)
        if count >= threshold:
            found.append(
                Condition(kind, row["insurer_id"], row.get("api_key_id"), "", first, last,
                          int(width.total_seconds()), count, threshold)
            )  # fmt: skip
    return found


def find_bursts(queryset: QuerySet[UnderwritingRequest], now: datetime) -> list[Condition]:
    width = timedelta(minutes=settings.FLAG_BURST_WINDOW_MINUTES)
    threshold = int(settings.FLAG_BURST_COUNT)
    recent = queryset.filter(created_at__gte=now - _lookback(width))
    per_insurer = _sliding(FlagKind.BURST, recent, ["insurer_id"], width, threshold)
    per_key = _sliding(FlagKind.BURST, recent.filter(api_key__isnull=False), ["insurer_id", "api_key_id"], width,
                       threshold)  # fmt: skip
    return per_insurer + per_key


def find_identity_mismatches(queryset: QuerySet[UnderwritingRequest], now: datetime) -> list[Condition]:
    width = timedelta(hours=settings.FLAG_MISMATCH_WINDOW_HOURS)
    threshold = int(settings.FLAG_MISMATCH_COUNT)
    mismatched = queryset.filter(
        created_at__gte=now - _lookback(width),
        status=RequestStatus.REJECTED,
        verification_failure__identity=VerificationFailure.Identity.MISMATCH,
    )
    # Per API key, and per insurer over every key, the portal and batches together, so that spreading the
    # guesses over several keys does not keep each one under the threshold.
    per_key = _sliding(FlagKind.IDENTITY_MISMATCHES, mismatched.filter(api_key__isnull=False),
                       ["insurer_id", "api_key_id"], width, threshold)  # fmt: skip
    return per_key + _sliding(FlagKind.IDENTITY_MISMATCHES, mismatched, ["insurer_id"], width, threshold)


def find_custodian_misuse(
    queryset: QuerySet[UnderwritingRequest], now: datetime, *, since: datetime | None = None
) -> list[Condition]:
    """Every ``custodian.misuse`` audit entry within the lookback (or since the last closed flag)."""
    window = timedelta(seconds=max(3600.0, 2 * float(settings.FLAG_EVALUATE_SECONDS)))
    entries = AuditEntry.objects.filter(action="custodian.misuse", at__gte=since or now - window)
    found = entries.aggregate(n=Count("id"), first=Min("at"), last=Max("at"))
    if not found["n"]:
        return []
    return [
        Condition(FlagKind.CUSTODIAN_MISUSE, None, None, "", found["first"], found["last"],
                  int(window.total_seconds()), found["n"], 1)
    ]  # fmt: skip


FINDERS: dict[str, Finder] = {
    FlagKind.SUBJECT_MANUALS: find_subject_manuals,
    FlagKind.SUBJECT_INSURERS: find_subject_insurers,
    FlagKind.BURST: find_bursts,
    FlagKind.IDENTITY_MISMATCHES: find_identity_mismatches,
    FlagKind.CUSTODIAN_MISUSE: find_custodian_misuse,
}


def _scope(condition: Condition) -> QuerySet[UnderwritingRequest]:
    """The requests a condition is about (to count it again after a closed flag)."""
    queryset = UnderwritingRequest.objects.all()
    if condition.kind in (FlagKind.SUBJECT_MANUALS, FlagKind.SUBJECT_INSURERS):
        queryset = queryset.filter(subject_key=condition.subject_key)
    if condition.insurer_id is not None:
        queryset = queryset.filter(insurer_id=condition.insurer_id)
    if condition.api_key_id is not None:
        queryset = queryset.filter(api_key_id=condition.api_key_id)
    return queryset


def _after_closed(condition: Condition, now: datetime) -> Condition | None:
    """The condition counting only requests after the last closed flag for it (None if it no longer holds)."""
    closed_until = (
        MisuseFlag.objects.filter(condition=condition.key, status=MisuseFlag.Status.CLOSED)
        .aggregate(until=Max("window_end"))
        .get("until")
    )
    if closed_until is None or closed_until < condition.window_start:
        return condition
    if condition.kind == FlagKind.CUSTODIAN_MISUSE:  # counted from the audit log, not from requests
        return next(iter(find_custodian_misuse(UnderwritingRequest.objects.none(), now, since=closed_until)), None)
    again = FINDERS[condition.kind](_scope(condition).filter(created_at__gt=closed_until), now)
    return next((found for found in again if found.key == condition.key), None)


def _flag_upsert(condition: Condition) -> bool | None:
    """True: raised; False: an open flag's counts grew; None: nothing new."""
    existing = MisuseFlag.objects.filter(condition=condition.key).exclude(status=MisuseFlag.Status.CLOSED).first()
    if existing is not None:
        if condition.count <= existing.count and condition.window_end <= existing.window_end:
            return None
        MisuseFlag.objects.filter(pk=existing.pk).update(
            count=max(existing.count, condition.count),
            window_end=max(existing.window_end, condition.window_end),
            updated_at=timezone.now(),
        )
        return False
    try:
        with transaction.atomic():
            flag = MisuseFlag.objects.create(
                kind=condition.kind, condition=condition.key, insurer_id=condition.insurer_id,
                api_key_id=condition.api_key_id, subject_key=condition.subject_key,
                window_start=condition.window_start, window_end=condition.window_end,
                window_seconds=condition.window_seconds, count=condition.count, threshold=condition.threshold,
            )  # fmt: skip
            audit_record(
                action="flag.raise",
                target_type="misuse_flag",
                target_id=str(flag.pk),
                detail={
                    "kind": condition.kind, "insurer_id": condition.insurer_id, "api_key_id": condition.api_key_id,
                    "subject": subject_ref(condition.subject_key), "count": condition.count,
                    "threshold": condition.threshold,
                },
            )  # fmt: skip
    except IntegrityError:
        return None  # another evaluation raised it a moment ago
    return True


def flags_evaluate(*, now: datetime | None = None, kinds: Iterable[str] | None = None) -> EvaluationReport:
    """Find every condition over its threshold and raise (or update) its flag. Safe to run twice."""
    now = now or timezone.now()
    raised = updated = 0
    for kind in kinds or FINDERS:
        for found in FINDERS[kind](UnderwritingRequest.objects.all(), now):
            condition = _after_closed(found, now)
            outcome = None if condition is None else _flag_upsert(condition)
            raised += outcome is True
            updated += outcome is False
    return EvaluationReport(raised=raised, updated=updated)


REVIEW_STATUSES = {MisuseFlag.Status.ACKNOWLEDGED, MisuseFlag.Status.CLOSED}


@transaction.atomic
def flag_review(*, flag_id: int, status: str, reviewed_by: User, note: str = "") -> bool:
    """Acknowledge or close a flag; False when it was already closed (or already in that status)."""
    if status not in REVIEW_STATUSES:
        raise UnderwritingError("invalid_input", "A flag is reviewed as acknowledged or closed.")
    now = timezone.now()
    fields = {"status": status, "reviewed_by": reviewed_by, "reviewed_at": now, "updated_at": now}
    if note:
        fields["review_note"] = note[:500]
    changed = (
        MisuseFlag.objects.filter(pk=flag_id)
        .exclude(status=MisuseFlag.Status.CLOSED)
        .exclude(status=status)
        .update(**fields)
    )
    if changed:
        audit_record(
            action="flag.review",
            actor=reviewed_by.get_username(),
            target_type="misuse_flag",
            target_id=str(flag_id),
            detail={"status": status, "note": note[:500]},
        )
    return bool(changed)
