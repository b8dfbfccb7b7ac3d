"""Wake-ups for callers waiting on a request (the API's ``?wait=N``).

Each terminal transition publishes a message on the request's Redis channel once its transaction has
committed; a waiter subscribes, re-reads the request (so a transition that happened before it subscribed
is not missed) and then sleeps until a message or the deadline. One request costs a waiter three reads
instead of a poll every few milliseconds.

Best effort by design: the database row is the truth. A message lost to a Redis hiccup only delays the
waiter until its next fallback read (``FALLBACK_POLL_SECONDS``); without Redis (the embedded default) the
waiter polls. Channel names carry the request id, never anything about the applicant.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "underwriting:terminal:"
FALLBACK_POLL_SECONDS = 2.0
_clients: dict[str, redis.Redis] = {}


def redis_client() -> redis.Redis | None:
    """This process's client for REDIS_URL; None in the embedded default (no Redis)."""
    url = settings.REDIS_URL
    if not url:
        return None
    if url not in _clients:  # one pool per process and URL (redis-py re-creates it after a fork)
        _clients[url] = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    return _clients[url]


def channel(request_id: uuid.UUID | str) -> str:
    return f"{CHANNEL_PREFIX}{request_id}"


def announce_terminal(*request_ids: uuid.UUID | str) -> None:
    """Publish the requests' wake-ups once the current transaction commits (at once outside one)."""
    client = redis_client()
    if client is not None and request_ids:
        names = [channel(request_id) for request_id in request_ids]
        transaction.on_commit(lambda: _publish(client, names))


def _publish(client: redis.Redis, names: list[str]) -> None:
    try:
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.publish(name, b"1")
            pipe.execute()
    except redis.RedisError as exc:
        logger.info("wake-up not published (%s); waiters fall back to polling", exc.__class__.__name__)


def wait_terminal(
    request_id: uuid.UUID | str,
    is_terminal: Callable[[], bool],
    timeout: float,
    *,
    poll_seconds: float = FALLBACK_POLL_SECONDS,
) -> bool:
    """Block until ``is_terminal()`` holds (True) or ``timeout`` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    client = redis_client()
    subscription = None
    if client is not None:
        try:
            subscription = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            subscription.subscribe(channel(request_id))
        except redis.RedisError:
            subscription = None
    try:
        while not is_terminal():  # first read after subscribing: an earlier transition is not missed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if subscription is None:
                time.sleep(min(remaining, 0.05))
                continue
            try:
                subscription.get_message(timeout=min(remaining, poll_seconds))
            except redis.RedisError:
                subscription = None
        return True
    finally:
        if subscription is not None:
            with contextlib.suppress(redis.RedisError):
                subscription.close()
