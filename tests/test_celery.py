"""Celery wiring: every task names its queue, every route and beat entry names a real task, and every
enqueue goes through config.celery.enqueue, which logs a broker that cannot take a message."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from kombu.exceptions import OperationalError

from config.celery import TASK_QUEUES, app, enqueue

PROJECT = ("audit.", "datadomain.", "underwriting.", "insurer_portal.", "ops.", "residents.")


def project_tasks() -> dict[str, Any]:
    for config in apps.get_app_configs():  # every app's tasks module, as a worker discovers them
        if importlib.util.find_spec(f"{config.name}.tasks") is not None:
            importlib.import_module(f"{config.name}.tasks")
    importlib.import_module("datadomain.custodian")  # only the custodian worker imports it otherwise
    return {name: task for name, task in app.tasks.items() if name.startswith(PROJECT)}


def test_every_route_names_a_real_task_on_the_queue_its_decorator_names() -> None:
    tasks = project_tasks()
    queues = {queue.name for queue in settings.CELERY_TASK_QUEUES}
    for name, route in settings.CELERY_TASK_ROUTES.items():
        assert name in tasks, f"the route {name} names no task"
        assert route["queue"] in queues
        assert TASK_QUEUES[name] == route["queue"], name


def test_every_task_names_itself_and_its_queue_and_has_a_route() -> None:
    for name, task in project_tasks().items():
        assert name == f"{task.__module__}.{task.__name__}", name  # the name says where the code is
        assert name in TASK_QUEUES, f"{name} is not declared with config.celery.task"
        if TASK_QUEUES[name] is None:  # sent to a queue chosen at each call (the heartbeat: every queue)
            assert name not in settings.CELERY_TASK_ROUTES
            continue
        assert name in settings.CELERY_TASK_ROUTES, f"{name} has no route"


def test_every_beat_entry_names_a_real_task() -> None:
    tasks = project_tasks()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in tasks, entry


def test_flag_evaluation_runs_as_often_as_the_setting_says() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["evaluate-misuse-flags"]
    assert entry["schedule"] == settings.FLAG_EVALUATE_SECONDS


def test_a_broker_that_cannot_take_a_message_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    task = project_tasks()["insurer_portal.tasks.sweep_batches"]

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(task, "apply_async", broker_down)
    with caplog.at_level(logging.WARNING, logger="config.celery"):
        assert enqueue("insurer_portal.tasks.sweep_batches", what="batch sweep") is False
    assert "broker unavailable, batch sweep not sent (OperationalError)" in caplog.text


@pytest.mark.django_db
def test_a_confirmed_batch_is_sent_through_the_dispatcher(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker outage leaves the batch running for the sweeper instead of failing the confirmation: only
    the dispatcher swallows and logs it (a direct ``.delay`` would raise)."""
    from insurer_portal.models import Batch
    from insurer_portal.services import batch_start
    from tests.factories import InsurerFactory

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(project_tasks()["insurer_portal.tasks.run_batch"], "apply_async", broker_down)
    batch = Batch.objects.create(insurer=InsurerFactory(), filename="b.csv", valid_rows=1)
    with caplog.at_level(logging.WARNING, logger="config.celery"), django_capture_on_commit_callbacks(execute=True):
        assert batch_start(batch=batch)
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.RUNNING
    assert "broker unavailable, batch run not sent" in caplog.text


@pytest.mark.skipif(not settings.REDIS_URL, reason="opening a channel needs the broker (REDIS_URL)")
def test_the_redis_channel_keeps_one_client_per_connection_pool() -> None:
    from kombu import Connection

    from config.celery import RedisTransport

    with Connection(settings.REDIS_URL, transport=RedisTransport) as connection:
        channel: Any = connection.default_channel
        client = channel._create_client()
        assert channel._create_client() is client
        assert client.connection_pool is channel.pool
        channel._disconnect_pools()  # after a fork or a lost connection: a new pool, a new client
        assert channel._create_client() is not client
        assert channel._create_client().connection_pool is channel.pool
