"""Redis restarts in the middle of a batch (and loses everything it held): no request is lost.

The shared Redis of the test machine is never touched: this test starts its own throwaway
``redis-server`` on a free loopback port and points its workers, beat, the API's Celery producer and
the cache (the API throttle) at it.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection
from kombu import pools

from config.celery import app
from tests.faults.conftest import (
    FAULT_ENV,
    FAULT_GROUPS,
    FaultStack,
    Supervisor,
    assert_completed_once_with_the_right_tiers,
    assert_no_personal_data_in_logs,
    batch_under_way,
    make_population,
    start_fault_stack,
    submit,
    wait_terminal,
)
from tests.population import wait_for
from tests.services import require_redis
from tests.workers import WorkerPool
from underwriting.models import UnderwritingRequest

pytestmark = pytest.mark.integration


class ThrowawayRedis:
    def __init__(self, folder: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                   "no", "--daemonize", "no", "--dir", str(self.folder)]  # fmt: skip
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.ping, timeout=10, what="the throwaway Redis answering")

    def ping(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


def use_broker(url: str) -> None:
    """Point this process's Celery producer at ``url``; its connection pools are rebuilt on next use.

    kombu keeps pools in a process-wide registry keyed by connection, so closing only ``app.pool`` would
    hand the same closed pool back when the URL is switched back: ``pools.reset`` clears the registry."""
    app.conf.broker_url = url
    app.conf.result_backend = url
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def restartable(transactional_db: None, tmp_path: Path, settings: Any) -> Iterator[tuple[ThrowawayRedis, FaultStack]]:
    require_redis()
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: the Redis restart test starts its own instance.")
    server = ThrowawayRedis(tmp_path)
    server.start()
    previous = app.conf.broker_url
    settings.REDIS_URL = server.url
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": server.url}}
    use_broker(server.url)
    pool = WorkerPool(database_name=str(connection.settings_dict["NAME"]))
    stack = start_fault_stack(pool, {**FAULT_ENV, "REDIS_URL": server.url})
    try:
        yield server, stack
    finally:
        stack.stop_beat()
        pool.stop()
        use_broker(previous)
        server.kill()


def test_redis_restart_during_a_batch_loses_nothing(
    restartable: tuple[ThrowawayRedis, FaultStack], tmp_path: Path
) -> None:
    server, stack = restartable
    assert set(stack.pool.workers) == set(FAULT_GROUPS)
    population = make_population(tmp_path)
    ids = submit(population, 30, "BATCH")
    batch_under_way(ids)
    in_progress = UnderwritingRequest.objects.filter(pk__in=ids).exclude(status="completed").count()

    with Supervisor(stack) as supervisor:
        server.kill()  # everything queued or unacknowledged is gone with it (no persistence)
        during = submit(population, 3, "OUTAGE", start=30)  # accepted while the broker is down
        time.sleep(2)
        server.start()
        wait_terminal(ids + during, timeout=120, stack=stack)

    assert in_progress > 0, "Redis went down while part of the batch was still in flight"
    assert_completed_once_with_the_right_tiers(ids + during)
    assert_no_personal_data_in_logs(stack, population["people"])
    assert len(supervisor.restarts) <= len(FAULT_GROUPS), supervisor.restarts
    if supervisor.restarts:
        print(f"workers restarted by the supervisor: {supervisor.restarts}")
