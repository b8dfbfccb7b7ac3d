"""A task travels through the real broker to real worker processes and changes the database."""

from __future__ import annotations

import pytest

from ops.models import WorkerHeartbeat
from ops.tasks import broadcast_heartbeat, heartbeat
from tests.population import wait_for
from tests.workers import WorkerPool

pytestmark = pytest.mark.integration


def test_every_queue_is_consumed_by_its_worker(celery_workers: WorkerPool) -> None:
    broadcast_heartbeat.delay()

    beats = wait_for(lambda: list(WorkerHeartbeat.objects.all()) if WorkerHeartbeat.objects.count() >= 4 else None)

    by_queue = {beat.queue: beat.hostname for beat in beats}
    assert by_queue == {
        "domain": celery_workers.hostname("domain"),
        "scoring": celery_workers.hostname("scoring"),
        "webhooks": celery_workers.hostname("scoring"),
        "custodian": celery_workers.hostname("custodian"),
    }


def test_task_result_and_effect_are_visible_to_the_caller(celery_workers: WorkerPool) -> None:
    result = heartbeat.apply_async(args=["scoring"], queue="scoring")
    result.get(timeout=30)  # heartbeat ignores its result, so this returns None once the task ran

    beat = wait_for(lambda: WorkerHeartbeat.objects.filter(queue="scoring").first())
    assert beat.hostname == celery_workers.hostname("scoring")
    assert beat.beats == 1
