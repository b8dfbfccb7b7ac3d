from __future__ import annotations

import pytest

from ops.models import WorkerHeartbeat
from ops.selectors import queue_liveness
from ops.services import heartbeat_record

pytestmark = pytest.mark.django_db


def test_heartbeat_is_counted_per_queue_and_worker() -> None:
    heartbeat_record(queue="scoring", hostname="main@a")
    heartbeat_record(queue="scoring", hostname="main@a")
    heartbeat_record(queue="custodian", hostname="custodian@a")
    assert WorkerHeartbeat.objects.get(queue="scoring", hostname="main@a").beats == 2
    assert WorkerHeartbeat.objects.count() == 2


def test_queue_liveness_reports_never_seen_queues_as_none() -> None:
    heartbeat_record(queue="scoring", hostname="main@a")
    liveness = {item["queue"]: item["last_seen_seconds"] for item in queue_liveness()}
    assert liveness["domain"] is None
    assert liveness["scoring"] is not None
    assert liveness["scoring"] < 5
