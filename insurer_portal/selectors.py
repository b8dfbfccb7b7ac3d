"""Reads for the portal, always scoped to one insurer (another insurer's object reads as None -> 404)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncMonth
from django.utils import timezone

from insurer_portal.models import Batch
from tenants.models import ApiKey, InsurerUser
from underwriting import selectors as uw_selectors
from underwriting.charts import DayCount
from underwriting.models import RequestStatus, UnderwritingRequest, WebhookDelivery, WebhookEndpoint


def membership_for(user: User | AnonymousUser) -> InsurerUser | None:
    if not user.is_authenticated or not user.is_active:
        return None
    return InsurerUser.objects.select_related("insurer").filter(user=user, insurer__is_active=True).first()


@dataclass(frozen=True)
class RequestFilters:
    status: str = ""
    tier: str = ""
    manual: str = ""
    created_from: date | None = None
    created_to: date | None = None
    q: str = ""

    @property
    def active(self) -> bool:
        return any([self.status, self.tier, self.manual, self.created_from, self.created_to, self.q])


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


def requests_filtered(*, insurer_id: int, filters: RequestFilters) -> QuerySet[UnderwritingRequest]:
    queryset = uw_selectors.requests_for_insurer(
        insurer_id=insurer_id,
        status=filters.status or None,
        created_after=_day_start(filters.created_from) if filters.created_from else None,
        created_before=_day_start(filters.created_to + timedelta(days=1)) if filters.created_to else None,
    )
    if filters.tier:
        queryset = queryset.filter(status=RequestStatus.COMPLETED, tier_code=filters.tier)
    if filters.manual:
        queryset = queryset.filter(manual_slug=filters.manual)
    if filters.q:
        queryset = queryset.filter(reference__icontains=filters.q)
    return queryset


def tier_codes_for_insurer(*, insurer_id: int) -> list[str]:
    codes = (
        UnderwritingRequest.objects.filter(insurer_id=insurer_id, status=RequestStatus.COMPLETED)
        .values_list("tier_code", flat=True)
        .distinct()
    )
    return sorted(set(codes))


def batches_for_insurer(*, insurer_id: int) -> QuerySet[Batch]:
    return Batch.objects.filter(insurer_id=insurer_id).select_related("created_by")


def batch_for_insurer(*, insurer_id: int, batch_id: int) -> Batch | None:
    return Batch.objects.filter(pk=batch_id, insurer_id=insurer_id).first()


@dataclass(frozen=True)
class BatchProgress:
    total: int
    finished: int
    by_status: dict[str, int]
    refused: int = 0  # valid rows the submission itself refused (no request was made)

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else math.floor(100 * self.finished / self.total)

    @property
    def submitted(self) -> int:
        return sum(self.by_status.values()) + self.refused

    @property
    def completed(self) -> int:
        return self.by_status.get(RequestStatus.COMPLETED, 0)

    @property
    def not_completed(self) -> int:
        """Finished without a tier: rejected, unrated, failed, or refused at submission."""
        return self.finished - self.completed

    @property
    def in_progress(self) -> int:
        return self.submitted - self.finished


def batch_progress(batch: Batch) -> BatchProgress:
    """Rows whose request reached a terminal status (or that failed to submit) out of the valid rows."""
    statuses = Counter(batch.rows.filter(errors=[]).exclude(request=None).values_list("request__status", flat=True))
    refused = batch.rows.filter(request=None).exclude(errors=[]).count() - (batch.total_rows - batch.valid_rows)
    terminal = sum(count for status, count in statuses.items() if status in _TERMINAL) + max(refused, 0)
    return BatchProgress(total=batch.valid_rows, finished=terminal, by_status=dict(statuses), refused=max(refused, 0))


_TERMINAL = {RequestStatus.COMPLETED, RequestStatus.REJECTED, RequestStatus.UNRATED, RequestStatus.FAILED}


def api_keys_for_insurer(*, insurer_id: int) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(insurer_id=insurer_id)


def api_key_for_insurer(*, insurer_id: int, key_id: int) -> ApiKey | None:
    return ApiKey.objects.filter(pk=key_id, insurer_id=insurer_id).select_related("insurer").first()


def members_for_insurer(*, insurer_id: int) -> QuerySet[InsurerUser]:
    return InsurerUser.objects.filter(insurer_id=insurer_id).select_related("user").order_by("user__username")


def member_for_insurer(*, insurer_id: int, member_id: int) -> InsurerUser | None:
    return InsurerUser.objects.filter(pk=member_id, insurer_id=insurer_id).select_related("user").first()


def endpoints_for_insurer(*, insurer_id: int) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(insurer_id=insurer_id).order_by("-created_at")


def endpoint_for_insurer(*, insurer_id: int, endpoint_id: int) -> WebhookEndpoint | None:
    return WebhookEndpoint.objects.filter(pk=endpoint_id, insurer_id=insurer_id).first()


def deliveries_for_insurer(*, insurer_id: int, endpoint_id: int | None = None) -> QuerySet[WebhookDelivery]:
    queryset = WebhookDelivery.objects.filter(endpoint__insurer_id=insurer_id).select_related("endpoint", "request")
    if endpoint_id is not None:
        queryset = queryset.filter(endpoint_id=endpoint_id)
    return queryset


def delivery_for_insurer(*, insurer_id: int, delivery_id: int) -> WebhookDelivery | None:
    return WebhookDelivery.objects.filter(pk=delivery_id, endpoint__insurer_id=insurer_id).first()


# --- dashboard and usage -------------------------------------------------------------------------------


def volume_per_day(*, insurer_id: int, days: int = 30, today: date | None = None) -> list[DayCount]:
    calendar, counts = uw_selectors.requests_per_day(insurer_id=insurer_id, days=days, today=today)
    return [DayCount(day, count) for day, count in zip(calendar, counts, strict=True)]


def tier_mix_per_manual(*, insurer_id: int, since: datetime) -> dict[str, dict[str, int]]:
    return uw_selectors.tier_mix_per_manual(since=since, insurer_id=insurer_id)


def latency_percentiles(*, insurer_id: int, since: datetime) -> dict[str, float] | None:
    """p50/p90/p99 of submit-to-result time (seconds) over the newest completed requests (nearest rank)."""
    return uw_selectors.latency_percentiles(since=since, insurer_id=insurer_id)


def status_counts(*, insurer_id: int, since: datetime) -> dict[str, int]:
    rows = (
        UnderwritingRequest.objects.filter(insurer_id=insurer_id, created_at__gte=since)
        .values("status")
        .annotate(n=Count("id"))
    )
    return {row["status"]: row["n"] for row in rows}


@dataclass(frozen=True)
class StatusBreakdown:
    """A period's requests and how they ended; the parts add up to ``total``."""

    total: int
    completed: int
    rejected: int
    unrated: int
    failed: int

    @property
    def in_progress(self) -> int:
        return self.total - self.completed - self.rejected - self.unrated - self.failed


def status_breakdown(*, insurer_id: int, since: datetime) -> StatusBreakdown:
    counts = status_counts(insurer_id=insurer_id, since=since)
    return StatusBreakdown(
        total=sum(counts.values()),
        completed=counts.get(RequestStatus.COMPLETED, 0),
        rejected=counts.get(RequestStatus.REJECTED, 0),
        unrated=counts.get(RequestStatus.UNRATED, 0),
        failed=counts.get(RequestStatus.FAILED, 0),
    )


@dataclass(frozen=True)
class MonthUsage:
    month: date
    total: int
    completed: int
    rejected: int
    unrated: int
    failed: int


def usage_per_month(*, insurer_id: int, months: int = 12) -> list[MonthUsage]:
    rows = (
        UnderwritingRequest.objects.filter(insurer_id=insurer_id)
        .annotate(month=TruncMonth("created_at", tzinfo=timezone.get_current_timezone()))
        .values("month")
        .annotate(
            total=Count("id"),
            completed=Count("id", filter=Q(status=RequestStatus.COMPLETED)),
            rejected=Count("id", filter=Q(status=RequestStatus.REJECTED)),
            unrated=Count("id", filter=Q(status=RequestStatus.UNRATED)),
            failed=Count("id", filter=Q(status=RequestStatus.FAILED)),
        )
        .order_by("-month")[:months]
    )
    return [
        MonthUsage(
            month=row["month"].date() if isinstance(row["month"], datetime) else row["month"],
            total=row["total"],
            completed=row["completed"],
            rejected=row["rejected"],
            unrated=row["unrated"],
            failed=row["failed"],
        )
        for row in rows
    ]


def own_limit_retry_date(*, insurer_id: int, subject_key: str) -> date | None:
    """The first day the insurer's own per-applicant limit lets a new request about this subject through,
    counted from the insurer's own requests only (never another insurer's); None when the insurer is under
    its limit (then the bureau's limit across insurers stopped it, whose date is not the insurer's to know)."""
    window = timedelta(days=settings.UNDERWRITING_RATE_LIMIT_DAYS)
    since = timezone.now() - window
    made = list(
        uw_selectors.requests_counted_against_limits()
        .filter(insurer_id=insurer_id, subject_key=subject_key, created_at__gte=since)
        .order_by("created_at")
        .values_list("created_at", flat=True)
    )
    limit = int(settings.UNDERWRITING_RATE_LIMIT_COUNT)
    if len(made) < limit:
        return None
    return timezone.localdate(made[len(made) - limit] + window)
