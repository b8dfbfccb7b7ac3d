"""Counters in the shared cache that many processes and threads update at once (API throttles, sign-in
lock-out): one atomic step each, never a read followed by a write.

``cache.add`` (Redis ``SET NX EX``) creates a counter with its expiry; ``cache.incr`` (``INCRBY``) adds to
an existing one. Neither can lose a concurrent update, which ``get`` + ``set`` does (the old per-key
throttle answered 18 of 40 concurrent calls at 10 a minute). While Redis does not answer, ops.cache falls
back to this process's memory, where the same calls are atomic under the local cache's lock.

:func:`counters_add_within` adds to several limited counters at once. On Redis (ops.cache) that is one
script, one round trip and one atomic step for all of them, instead of three round trips per counter
(``SET NX``, then Django's ``incr``: ``EXISTS`` + ``INCRBY``); elsewhere it is the same steps one by one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from django.core.cache import cache, caches
from django.core.cache.backends.base import BaseCache

_ATTEMPTS = 3


@dataclass(frozen=True)
class Increment:
    """Add ``delta`` to the counter ``key`` (created with ``timeout`` seconds to live), allowed up to ``limit``."""

    key: str
    delta: int
    timeout: int
    limit: int


def counter_add(key: str, delta: int, *, timeout: int, backend: BaseCache | None = None) -> int:
    """Add ``delta`` to the counter ``key`` (created with ``timeout`` seconds to live) and return its value."""
    store = cache if backend is None else backend
    for _ in range(_ATTEMPTS):
        if store.add(key, delta, timeout=timeout):
            return delta
        try:
            return int(store.incr(key, delta))
        except ValueError:  # it expired between add and incr: create it again
            continue
    return int(store.incr(key, delta))


def counter_subtract(key: str, delta: int, *, backend: BaseCache | None = None) -> None:
    """Give back ``delta`` (a refused request's share); a counter that has expired meanwhile stays gone."""
    store = cache if backend is None else backend
    with contextlib.suppress(ValueError):
        store.decr(key, delta)


def counters_add_within(increments: Sequence[Increment]) -> int | None:
    """Add each increment in order. At the first counter that goes past its limit, take back every share
    added so far (that counter's included) and return its index; None when every share was added. The
    counters after a refusing one are not touched, so a call one limit refused uses up no other's budget."""
    backend = caches["default"]
    add_within_limits = getattr(backend, "add_within_limits", None)
    if add_within_limits is not None:
        return cast(Callable[[Sequence[Increment]], "int | None"], add_within_limits)(increments)
    return counters_add_within_on(backend, increments)


def counters_add_within_on(backend: BaseCache, increments: Sequence[Increment]) -> int | None:
    """:func:`counters_add_within` step by step on ``backend`` (any Django cache)."""
    for index, increment in enumerate(increments):
        if counter_add(increment.key, increment.delta, timeout=increment.timeout, backend=backend) > increment.limit:
            for added in increments[: index + 1]:
                counter_subtract(added.key, added.delta, backend=backend)
            return index
    return None
