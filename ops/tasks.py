from __future__ import annotations

from celery import Task

from config.celery import enqueue, task
from ops import selectors, services


# No queue of its own: broadcast_heartbeat sends it to every queue in turn.
@task(name="ops.tasks.heartbeat", queue=None, bind=True, ignore_result=True)
def heartbeat(self: Task[[str], None], queue: str) -> None:
    services.heartbeat_record(queue=queue, hostname=self.request.hostname or "eager")


@task(name="ops.tasks.broadcast_heartbeat", queue="domain", ignore_result=True)
def broadcast_heartbeat() -> None:
    """Send one heartbeat to every queue, so each queue's consumers show up in WorkerHeartbeat."""
    for queue in selectors.configured_queues():
        enqueue(heartbeat.name, queue, queue=queue, expires=60, what=f"heartbeat to {queue}")
