from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, TypedDict

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max
from django.utils import timezone

from ops.models import WorkerHeartbeat
from underwriting.charts import Chart, StackRow, stacked_day_chart, tier_mix_chart


class QueueLiveness(TypedDict):
    queue: str
    last_seen_seconds: float | None
    # No heartbeat answered within three heartbeat periods: no worker consumes the queue (or it is stuck).
    stale: bool


def configured_queues() -> list[str]:
    return [queue.name for queue in settings.CELERY_TASK_QUEUES]


def queue_liveness() -> list[QueueLiveness]:
    """Seconds since any worker last answered a heartbeat on each configured queue (None: never).

    Without a broker (the embedded default) tasks run in the web process itself: no queue has a worker
    to miss, so none is stale."""
    in_process = not settings.REDIS_URL
    latest = dict(WorkerHeartbeat.objects.values_list("queue").annotate(latest=Max("seen_at")))
    now = timezone.now()
    limit = 3 * float(settings.CELERY_BEAT_SCHEDULE["worker-heartbeat"]["schedule"])  # type: ignore[arg-type]
    rows = []
    for name in configured_queues():
        seen = round((now - latest[name]).total_seconds(), 1) if name in latest else None
        rows.append(
            QueueLiveness(queue=name, last_seen_seconds=seen, stale=not in_process and (seen is None or seen > limit))
        )
    return rows


def database_reachable() -> bool:
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            row = cursor.fetchone()
        return row is not None and tuple(row) == (1,)
    except Exception:  # noqa: BLE001 - any failure means "not ready"; the reason is not for the caller
        return False


def broker_reachable() -> bool | None:
    """True/False for a configured Redis broker, None when tasks run in-process (no broker)."""
    if not settings.REDIS_URL:
        return None
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        return client.ping() is True
    except redis.RedisError:
        return False


def queue_depths() -> dict[str, int] | None:
    """Messages waiting in each configured queue (kombu keeps a Redis list per queue); ``{}`` when Redis
    does not answer, None when tasks run in-process."""
    if not settings.REDIS_URL:
        return None
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        return {name: int(client.llen(name)) for name in configured_queues()}
    except redis.RedisError:
        return {}


def requests_by_status() -> dict[str, int]:
    from underwriting.models import UnderwritingRequest

    rows = UnderwritingRequest.objects.values_list("status").annotate(count=Count("pk")).order_by()
    return {str(status): int(count) for status, count in rows}


# --- the bureau's admin dashboard -----------------------------------------------------------------

DASHBOARD_DAYS = 30


@dataclass(frozen=True)
class QueueRow:
    queue: str
    depth: int | None  # None: not known (in-process, or Redis does not answer)
    last_seen_seconds: float | None
    stale: bool


@dataclass(frozen=True)
class BureauDashboard:
    """What the admin's landing page shows; a section is None when the user may not see it."""

    days: int
    volume: Chart | None = None
    volume_legend: list[tuple[str, str]] = field(default_factory=list)
    volume_total: int = 0
    mix_rows: list[StackRow] = field(default_factory=list)
    mix_legend: list[tuple[str, str]] = field(default_factory=list)
    mix_height: int = 0
    latency: dict[str, float] | None = None
    show_requests: bool = False
    show_flags: bool = False
    open_flags: list[tuple[str, str, int]] = field(default_factory=list)
    open_flags_total: int = 0
    queues: list[QueueRow] = field(default_factory=list)
    in_process: bool = False


def _queues() -> tuple[list[QueueRow], bool]:
    depths = queue_depths()
    rows = [
        QueueRow(row["queue"], (depths or {}).get(row["queue"]), row["last_seen_seconds"], row["stale"])
        for row in queue_liveness()
    ]
    return rows, depths is None


def bureau_dashboard(user: Any) -> BureauDashboard:
    """Requests per day by insurer, tier mix by manual and latency (for those who may read requests),
    open misuse flags (for those who may read flags), and the Celery queues (for all staff)."""
    from underwriting import selectors as uw

    queues, in_process = _queues()
    board = BureauDashboard(days=DASHBOARD_DAYS, queues=queues, in_process=in_process)
    if user.has_perm("underwriting.view_underwritingrequest"):
        since = timezone.now() - timedelta(days=DASHBOARD_DAYS)
        days, series = uw.requests_per_day_by_insurer(days=DASHBOARD_DAYS)
        volume, legend = stacked_day_chart(days, series)
        rows, mix_legend, height = tier_mix_chart(uw.tier_mix_per_manual(since=since))
        board = replace(
            board, show_requests=True, volume=volume, volume_legend=legend,
            volume_total=sum(sum(values) for values in series.values()), mix_rows=rows, mix_legend=mix_legend,
            mix_height=height, latency=uw.latency_percentiles(since=since),
        )  # fmt: skip
    if user.has_perm("underwriting.view_misuseflag"):
        open_flags = uw.open_flags_by_kind()
        board = replace(
            board, show_flags=True, open_flags=open_flags, open_flags_total=sum(count for _, _, count in open_flags)
        )
    return board
