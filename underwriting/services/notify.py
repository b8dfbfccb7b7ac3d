"""Wake-ups for callers waiting on a request (the API's ``?wait=N``).

Each terminal transition publishes a message on the request's Redis channel once its transaction has
committed; a waiter subscribes, reads the request (so a transition that happened before it subscribed is
not missed) and then sleeps until a message or the deadline. A request that completes while its caller
waits costs two reads, instead of a poll every few milliseconds.

Best effort by design: the database row is the truth. A message lost to a Redis hiccup only delays the
waiter until its next fallback read (``FALLBACK_POLL_SECONDS``); without Redis (the embedded default) the
waiter polls. Channel names carry the request id, never anything about the applicant.

A waiter holds a server thread for as long as it waits, and gunicorn's gthread workers have a fixed number
of threads, which health probes share. So :func:`waiter_slot` admits at most ``API_WAIT_MAX_PER_PROCESS``
waiters in one process (a fraction of its threads: the rest stay free for probes and other calls) and at
most ``API_WAIT_MAX_PER_KEY`` per API key (across processes through Redis, so that one client cannot take
every slot). A caller not admitted is answered at once with the current status; nobody queues.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import redis
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "underwriting:terminal:"
FALLBACK_POLL_SECONDS = 2.0
# One sorted set per API key: members are the waiters' tokens, scored by when their lease lapses, so the
# slot of a process killed mid-wait frees itself.
WAITERS_PREFIX = "underwriting:waiters:"
WAITER_LEASE_MARGIN_SECONDS = 30.0
WAITERS_SET_TTL_SECONDS = 300  # refreshed by every claim; far above any wait the API allows
_clients: dict[str, redis.Redis] = {}

_slots_lock = threading.Lock()
_process_waiters: Counter[str] = Counter()


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
                _next_wake_up(subscription, min(remaining, poll_seconds))
            except redis.RedisError:
                subscription = None
        return True
    finally:
        if subscription is not None:
            with contextlib.suppress(redis.RedisError):
                subscription.close()


def _next_wake_up(subscription: redis.client.PubSub, timeout: float) -> None:
    """Return on the channel's next message or after ``timeout`` seconds. ``get_message`` also returns
    (with None) when it reads the server's confirmation of the subscription; that is not a wake-up, and
    reading the request again for it would cost a query per wait for nothing."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        if subscription.get_message(timeout=remaining) is not None:
            return


@contextlib.contextmanager
def waiter_slot(key: str, seconds: float) -> Iterator[bool]:
    """Yield True when the caller may wait up to ``seconds`` for ``key`` (an API key's id), False when it
    must answer at once: this process already has ``API_WAIT_MAX_PER_PROCESS`` waiters, or the key has
    ``API_WAIT_MAX_PER_KEY`` (in this process, and across processes when Redis answers)."""
    if not _claim_in_process(key):
        yield False
        return
    try:
        admitted, token = _claim_shared(key, seconds)
        try:
            yield admitted
        finally:
            if token is not None:
                _release_shared(key, token)
    finally:
        with _slots_lock:
            _process_waiters[key] -= 1
            if _process_waiters[key] <= 0:
                del _process_waiters[key]


def _claim_in_process(key: str) -> bool:
    with _slots_lock:
        if _process_waiters.total() >= settings.API_WAIT_MAX_PER_PROCESS:
            return False
        if _process_waiters[key] >= settings.API_WAIT_MAX_PER_KEY:
            return False
        _process_waiters[key] += 1
        return True


def _claim_shared(key: str, seconds: float) -> tuple[bool, str | None]:
    """The key's slot across processes: (admitted, the token to release). Without Redis to ask, admitted
    with no token: the process's own count, already taken, is then the bound."""
    client = redis_client()
    if client is None:
        return True, None
    name = f"{WAITERS_PREFIX}{key}"
    token = uuid.uuid4().hex
    now = time.time()
    try:
        with client.pipeline(transaction=True) as pipe:  # MULTI/EXEC: the count includes our own entry
            pipe.zremrangebyscore(name, "-inf", now)
            pipe.zadd(name, {token: now + seconds + WAITER_LEASE_MARGIN_SECONDS})
            pipe.zcard(name)
            pipe.expire(name, WAITERS_SET_TTL_SECONDS)
            count = pipe.execute()[2]
    except redis.RedisError as exc:
        logger.info("waiter count not shared (%s); the per-process bound applies", exc.__class__.__name__)
        return True, None
    if count > settings.API_WAIT_MAX_PER_KEY:
        # Two callers racing for the last slot may both step back: the bound is never exceeded.
        _release_shared(key, token)
        return False, None
    return True, token


def _release_shared(key: str, token: str) -> None:
    client = redis_client()
    if client is None:
        return
    with contextlib.suppress(redis.RedisError):
        client.zrem(f"{WAITERS_PREFIX}{key}", token)
