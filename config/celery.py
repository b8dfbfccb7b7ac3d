"""The Celery application and the project's one way to enqueue a task, :func:`enqueue` (:func:`send` when
the caller waits for the answer).

Configuration lives in Django settings under the ``CELERY_`` prefix. Each task names itself and its queue
on its decorator, :func:`task`; Celery routes by CELERY_TASK_ROUTES, which repeats the queues by name for
the processes that send a task they do not import (tests/test_celery.py keeps the two equal).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from celery import Celery, Task, shared_task, signals
from celery.result import AsyncResult
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerError
from kombu.transport import redis as kombu_redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = Celery("underwriting_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fixup closes every database connection before and after each task unless this is
# set, which costs a new PostgreSQL connection (several ms) per task. Connections are recycled below
# instead, the way Django does it per HTTP request: CONN_MAX_AGE and health checks decide.
app.conf.update({"CELERY_DB_REUSE_MAX": 1_000_000})
app.autodiscover_tasks()


class _RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, keeping one redis-py client instead of building one per command.

    kombu builds a client (redis-py copies its several hundred response callbacks into it) for every
    publish and, in a worker, for every message's fetch bookkeeping and acknowledgement: about 0.1 ms of
    CPU each, three or four times per task. The client holds no connection of its own (it borrows one
    from the channel's pool per command), so one is kept per pool, and built again with a new pool (after
    a fork or a lost connection)."""

    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]  # not in the stubs
        pool = self.pool
        if self._shared_client is None or self._shared_client.connection_pool is not pool:
            self._shared_client = super()._create_client()  # type: ignore[misc]
        return self._shared_client


class RedisTransport(kombu_redis.Transport):
    """The broker transport for a redis:// broker (CELERY_BROKER_TRANSPORT)."""

    Channel = _RedisChannel


@signals.task_prerun.connect
@signals.task_postrun.connect
def _recycle_database_connections(**kwargs: Any) -> None:
    if getattr(kwargs.get("task"), "request", None) is not None and kwargs["task"].request.is_eager:
        return  # in-process: the caller's connection and transaction, leave them alone
    from django.db import close_old_connections

    close_old_connections()


def enqueue(name: str, *args: Any, what: str, link: str | None = None, **options: Any) -> bool:
    """Send the task ``name`` with ``args`` to its queue; False, logged, when the broker cannot take it.

    Every enqueue of the project goes through here. Tasks are named, not imported, so services never
    import task modules (``tasks -> services`` is the only direction, .importlinter) and a process can
    send a task it does not hold: the web and the scoring workers never import the custodian. ``link``
    names a task called with this one's result; ``options`` are Celery's (``countdown``, ``queue``).

    A committed row is the source of truth: when the broker cannot take the message (Redis restarting,
    a network blip) the step is not lost, only late, and the sweepers (beat) send it again. So a broker
    error is logged and swallowed instead of turning accepted work into an error for the user. Without a
    broker (REDIS_URL unset, development and tests) the task runs here and now, and its errors propagate.

    Nobody waits for the task's result, so it is sent with ``ignore_result``: otherwise Celery's Redis
    result backend subscribes the sending process to the result's channel on every send, and while Redis
    restarts that subscription gives up with a RuntimeError ("the Celery application must be restarted")
    that no broker error handler catches, turning an accepted request into a 500.
    """
    options.setdefault("ignore_result", True)
    return send(name, *args, what=what, link=link, **options) is not None


def send(name: str, *args: Any, what: str, link: str | None = None, **options: Any) -> AsyncResult[Any] | None:
    """:func:`enqueue` for a caller that waits for the task's answer: its AsyncResult, or None, logged
    (``what`` names the step), when the broker cannot take it. Such a caller is a page waiting on the
    domain (the four-eyes explanation), so a broker error is for it to show, not an error page."""
    if app.conf.task_always_eager:
        # In-process, this process is every worker, the custodian included: load the modules of the task
        # and of its callback (a signature of a task this process does not hold goes to the broker).
        for needed in (name, link):
            if needed is not None and needed not in app.tasks:
                importlib.import_module(needed.rpartition(".")[0])
    signature = app.signature(name, args=args, **options)
    if link is not None:
        signature.link(app.signature(link))
    try:
        return signature.apply_async()
    except (BrokerError, RedisError, ConnectionError) as exc:
        logger.warning("broker unavailable, %s not sent (%s)", what, exc.__class__.__name__)
        return None


def enqueue_on_commit(name: str, *args: Any, what: str, link: str | None = None, **options: Any) -> None:
    """:func:`enqueue` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: enqueue(name, *args, what=what, link=link, **options))


# Each task's queue as its decorator names it (None: sent to a queue chosen at each call).
TASK_QUEUES: dict[str, str | None] = {}


def task(*, name: str, queue: str | None, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]:
    """``shared_task`` naming the task and its queue where the task is written.

    The queue is not given to Celery as the task's ``queue`` attribute, which Celery 5 deprecates and 6.0
    ignores ("use the task_routes setting instead"): Celery routes by CELERY_TASK_ROUTES, and
    tests/test_celery.py holds that table equal to the queues named here."""

    def decorate(function: Callable[P, R]) -> Task[P, R]:
        TASK_QUEUES[name] = queue
        # Celery's stubs type the decorator only for literal keyword arguments.
        make = cast("Callable[[Callable[P, R]], Task[P, R]]", shared_task(name=name, **options))
        return make(function)

    return decorate
