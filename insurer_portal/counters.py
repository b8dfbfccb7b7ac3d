"""Counters in the shared cache that many processes and threads update at once (API throttles, sign-in
lock-out): one atomic step each, never a read followed by a write.

``cache.add`` (Redis ``SET NX EX``) creates a counter with its expiry; ``cache.incr`` (``INCRBY``) adds to
an existing one. Neither can lose a concurrent update, which ``get`` + ``set`` does (the old per-key
throttle answered 18 of 40 concurrent calls at 10 a minute). While Redis does not answer, ops.cache falls
back to this process's memory, where the same calls are atomic under the local cache's lock.
"""

from __future__ import annotations

import contextlib

from django.core.cache import cache

_ATTEMPTS = 3


def counter_add(key: str, delta: int, *, timeout: int) -> int:
    """Add ``delta`` to the counter ``key`` (created with ``timeout`` seconds to live) and return its value."""
    for _ in range(_ATTEMPTS):
        if cache.add(key, delta, timeout=timeout):
            return delta
        try:
            return int(cache.incr(key, delta))
        except ValueError:  # it expired between add and incr: create it again
            continue
    return int(cache.incr(key, delta))


def counter_subtract(key: str, delta: int) -> None:
    """Give back ``delta`` (a refused request's share); a counter that has expired meanwhile stays gone."""
    with contextlib.suppress(ValueError):
        cache.decr(key, delta)
