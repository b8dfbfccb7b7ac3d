"""Waking the pipeline's stages once the database has committed their requests.

Every message goes through the project's one dispatcher, :func:`config.celery.enqueue`, which logs and
swallows a broker error: a committed row is the source of truth, and the sweeper (``requests_sweep``,
``webhooks_sweep``, run by beat) finds rows that made no progress and enqueues them again.

Pipeline stages are woken, not sent one message per request: ``stage_wake`` sends a stage's drain task
only when none is already waiting (a Redis ``SET NX`` flag that the drain clears as it starts), and the
drain then takes every request in that stage, a chunk at a time. Under load many requests share one
task and one set of queries; an idle stack still answers each request at once.
"""

from __future__ import annotations

import contextlib

from celery import current_app
from django.db import transaction
from redis.exceptions import RedisError

from config.celery import enqueue
from underwriting.services.notify import redis_client

# Each stage's drain task, by name: services do not import the task modules (tasks -> services).
STAGE_TASKS = {"extract": "underwriting.tasks.drain_extraction", "score": "underwriting.tasks.drain_scoring"}

# A flag outlives a lost message by at most this long; the sweeper resumes what such a loss left behind.
WAKE_FLAG_SECONDS = 10


def wake_flag(stage: str) -> str:
    return f"underwriting:wake:{stage}"


def stage_wake(stage: str) -> bool:
    """Send ``stage``'s drain task unless one is already queued; False when the broker is unavailable."""
    client = None if current_app.conf.task_always_eager else redis_client()
    if client is not None:
        try:
            if not client.set(wake_flag(stage), b"1", nx=True, ex=WAKE_FLAG_SECONDS):
                return True  # a drain is queued and has not started: it will see this request
        except RedisError:
            client = None  # no flag: send anyway, a duplicate drain finds nothing to do
    sent = enqueue(STAGE_TASKS[stage], what=f"{stage} stage")
    if not sent and client is not None:
        with contextlib.suppress(RedisError):
            client.delete(wake_flag(stage))  # the next request tries again instead of waiting for the flag
    return sent


def stage_wake_on_commit(stage: str) -> None:
    transaction.on_commit(lambda: stage_wake(stage))


def stage_woken(stage: str) -> None:
    """Called by a drain as it starts: requests committed from now on send a new drain."""
    client = redis_client()
    if client is not None:
        with contextlib.suppress(RedisError):
            client.delete(wake_flag(stage))
