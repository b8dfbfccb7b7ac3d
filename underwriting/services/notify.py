"""Wake-ups for callers waiting on a request (the API's ``?wait=N``).

Each terminal transition publishes a message on the request's Redis channel once its transaction has
committed; a waiter subscribes, reads the request (so a transition that happened before it subscribed is
not missed) and then sleeps until a message or the deadline. A request that completes while its caller
waits costs two reads, instead of a poll every few milliseconds. The waiters of a process share one
subscription connection (:class:`_Listener`): a wait sends SUBSCRIBE and UNSUBSCRIBE on it and opens no
connection of its own.

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
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

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
    name = channel(request_id)
    listener = _listener()
    woken = listener.register(name) if listener is not None else None
    try:
        while True:
            if woken is not None:
                woken.clear()  # before the read: a wake-up during it is not lost
            if is_terminal():  # the first read comes after subscribing: an earlier transition is not missed
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if woken is None:
                time.sleep(min(remaining, 0.05))
            else:
                woken.wait(min(remaining, poll_seconds))
    finally:
        if woken is not None and listener is not None:
            listener.unregister(name, woken)


# The listener's read returns this often while nothing arrives, and waits this long after losing Redis
# before it connects again (waiters meanwhile fall back to reading the request every poll_seconds).
_LISTEN_SECONDS = 5.0
_RECONNECT_SECONDS = 1.0


class _Listener:
    """One Redis subscription per process, shared by every waiter in it.

    A waiter registers an event for its request's channel; a thread of the process reads the one pub/sub
    connection and sets the events of the channel a message arrived on. Subscribing and unsubscribing are
    commands sent on that connection, so a wait opens no connection of its own. Started lazily, in the
    process that waits (never in gunicorn's master before the fork). When Redis goes away the thread drops
    the connection and subscribes again on a new one; waiters whose wake-up was lost meanwhile read the
    request at their next fallback poll, and a waiter that cannot subscribe polls as without Redis.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.waiters: dict[str, set[threading.Event]] = {}
        self.pubsub: Any = None
        self.broken = False
        self.thread: threading.Thread | None = None

    def register(self, name: str) -> threading.Event | None:
        """An event set on each message on channel ``name``; None when the channel cannot be subscribed."""
        woken = threading.Event()
        with self.lock:
            if self.thread is None:  # the first waiter: the connection is made by its subscribe below
                self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                self.thread = threading.Thread(target=self._run, name="wait-wake-ups", daemon=True)
                self.thread.start()
            if self.broken or self.pubsub is None:
                return None
            waiting = self.waiters.setdefault(name, set())
            if not waiting:
                try:
                    self.pubsub.subscribe(name)
                except redis.RedisError as exc:
                    # The thread connects again; until then every waiter polls instead of trying in turn.
                    del self.waiters[name]
                    self._lost(exc)
                    return None
            waiting.add(woken)
        return woken

    def unregister(self, name: str, woken: threading.Event) -> None:
        with self.lock:
            waiting = self.waiters.get(name)
            if waiting is None:
                return
            waiting.discard(woken)
            if waiting:
                return
            del self.waiters[name]
            if self.pubsub is not None and not self.broken:
                try:
                    self.pubsub.unsubscribe(name)
                except redis.RedisError as exc:
                    self._lost(exc)

    def _lost(self, exc: Exception) -> None:
        """Called with the lock held: the connection is given up, the thread makes a new one."""
        if not self.broken:
            logger.info("wake-up subscription lost (%s); waiters fall back to polling", exc.__class__.__name__)
        self.broken = True

    def _run(self) -> None:
        while True:
            pubsub = self.pubsub
            if self.broken or pubsub is None:
                self._reconnect()
                continue
            try:
                message = pubsub.get_message(timeout=_LISTEN_SECONDS)
            except (redis.RedisError, OSError, ValueError, AttributeError) as exc:
                with self.lock:
                    self._lost(exc)
                continue
            if message is not None and message.get("type") == "message":
                name = message["channel"]
                with self.lock:
                    events = list(self.waiters.get(name.decode() if isinstance(name, bytes) else name, ()))
                for woken in events:
                    woken.set()

    def _reconnect(self) -> None:
        with self.lock:
            old, self.pubsub = self.pubsub, None
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        time.sleep(_RECONNECT_SECONDS)
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.ping()  # connects here, outside the lock, so no waiter waits for a dead Redis
            with self.lock:
                if self.waiters:
                    pubsub.subscribe(*self.waiters)
                self.pubsub, self.broken = pubsub, False
                # A wake-up may have been lost while the connection was down: every waiter reads again.
                for waiting in self.waiters.values():
                    for woken in waiting:
                        woken.set()
        except redis.RedisError:
            with contextlib.suppress(Exception):
                pubsub.close()


_listeners: dict[str, _Listener] = {}
_listeners_lock = threading.Lock()


def _listener() -> _Listener | None:
    """This process's listener for REDIS_URL (a new one after a fork); None without Redis."""
    client = redis_client()
    if client is None:
        return None
    url = str(settings.REDIS_URL)
    found = _listeners.get(url)
    if found is not None and found.pid == os.getpid():
        return found
    with _listeners_lock:
        found = _listeners.get(url)
        if found is None or found.pid != os.getpid():
            found = _listeners[url] = _Listener(client)
        return found


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
