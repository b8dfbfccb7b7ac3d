from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ops.models import WorkerHeartbeat


@transaction.atomic
def heartbeat_record(*, queue: str, hostname: str) -> WorkerHeartbeat:
    """Record that the worker ``hostname`` consumed a heartbeat from ``queue``. Safe to run twice."""
    now = timezone.now()
    beat, created = WorkerHeartbeat.objects.select_for_update().get_or_create(
        queue=queue, hostname=hostname, defaults={"seen_at": now, "beats": 1}
    )
    if not created:
        WorkerHeartbeat.objects.filter(pk=beat.pk).update(seen_at=now, beats=F("beats") + 1)
        beat.refresh_from_db()
    return beat
