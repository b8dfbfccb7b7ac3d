from __future__ import annotations

from celery import Task, shared_task

from ops import selectors, services


@shared_task(bind=True, ignore_result=True)
def heartbeat(self: Task[[str], None], queue: str) -> None:
    services.heartbeat_record(queue=queue, hostname=self.request.hostname or "eager")


@shared_task(ignore_result=True)
def broadcast_heartbeat() -> None:
    """Send one heartbeat to every queue, so each queue's consumers show up in WorkerHeartbeat."""
    for queue in selectors.configured_queues():
        heartbeat.apply_async(args=(queue,), queue=queue, expires=60)
