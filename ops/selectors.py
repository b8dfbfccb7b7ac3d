from __future__ import annotations

from typing import TypedDict

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max
from django.utils import timezone

from ops.models import WorkerHeartbeat


class QueueLiveness(TypedDict):
    queue: str
    last_seen_seconds: float | None
    # No heartbeat answered within three heartbeat periods: no worker consumes the queue (or it is stuck).
    stale: bool


def configured_queues() -> list[str]:
    return [queue.name for queue in settings.CELERY_TASK_QUEUES]


def queue_liveness() -> list[QueueLiveness]:
    """Seconds since any worker last answered a heartbeat on each configured queue (None: never)."""
    latest = dict(WorkerHeartbeat.objects.values_list("queue").annotate(latest=Max("seen_at")))
    now = timezone.now()
    limit = 3 * float(settings.CELERY_BEAT_SCHEDULE["worker-heartbeat"]["schedule"])  # type: ignore[arg-type]
    rows = []
    for name in configured_queues():
        seen = round((now - latest[name]).total_seconds(), 1) if name in latest else None
        rows.append(QueueLiveness(queue=name, last_seen_seconds=seen, stale=seen is None or seen > limit))
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
