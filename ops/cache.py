"""The shared cache (API throttling, sign-in lockouts) on Redis, with a per-process fallback.

Redis restarting must not turn every API call into a 500: while Redis does not answer, each operation
goes to a local in-memory cache instead, so throttles and lockouts keep working per process (looser,
never off) and the request itself goes on; requests accepted meanwhile are resumed by the sweeper once
the broker is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

from insurer_portal.counters import Increment, counters_add_within_on

logger = logging.getLogger(__name__)
_WARN_EVERY_SECONDS = 10.0

# insurer_portal.counters.counters_add_within in one atomic step: KEYS are the counters, ARGV holds
# (delta, timeout, limit) per counter. Returns the 1-based index of the counter that went past its limit
# (every share added up to it taken back), 0 when all were added.
_ADD_WITHIN_LIMITS = """
for i = 1, #KEYS do
    local delta = tonumber(ARGV[3 * i - 2])
    redis.call('SET', KEYS[i], 0, 'EX', ARGV[3 * i - 1], 'NX')
    if redis.call('INCRBY', KEYS[i], delta) > tonumber(ARGV[3 * i]) then
        for j = 1, i do
            redis.call('DECRBY', KEYS[j], ARGV[3 * j - 2])
        end
        return i
    end
end
return 0
"""


def _with_fallback(name: str) -> Callable[..., Any]:
    def method(self: RedisWithLocalFallback, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(super(RedisWithLocalFallback, self), name)(*args, **kwargs)
        except redis.RedisError as exc:
            self._warn(exc)
            return getattr(self.local, name)(*args, **kwargs)

    method.__name__ = name
    return method


class RedisWithLocalFallback(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self.local = LocMemCache("redis-fallback", {"OPTIONS": {"MAX_ENTRIES": 10_000}})
        self._warned_at = 0.0
        self._add_within_limits: Any = None  # the registered script, made on first use
        # Its client, made once: Django's get_client builds a new redis.Redis (with its table of reply
        # callbacks) on every call. The pool under it is the backend's, re-created by redis-py after a fork.
        self._script_client: Any = None

    def add_within_limits(self, increments: Sequence[Increment]) -> int | None:
        """insurer_portal.counters.counters_add_within in one Redis round trip (a Lua script, atomic);
        the counters are the ones ``add``/``incr``/``decr`` see under the same keys."""
        try:
            client = self._script_client
            if client is None:
                client = self._script_client = self._cache.get_client(None, write=True)
            if self._add_within_limits is None:
                self._add_within_limits = client.register_script(_ADD_WITHIN_LIMITS)
            keys = [self.make_and_validate_key(increment.key) for increment in increments]
            args = [value for i in increments for value in (i.delta, i.timeout, i.limit)]
            refused = int(self._add_within_limits(keys=keys, args=args, client=client))
        except redis.RedisError as exc:
            self._warn(exc)
            return counters_add_within_on(self.local, increments)
        return refused - 1 if refused else None

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > _WARN_EVERY_SECONDS:
            self._warned_at = now
            logger.warning("cache unavailable (%s): using this process's local cache", exc.__class__.__name__)

    get = _with_fallback("get")
    set = _with_fallback("set")
    add = _with_fallback("add")
    touch = _with_fallback("touch")
    delete = _with_fallback("delete")
    incr = _with_fallback("incr")
    has_key = _with_fallback("has_key")
    get_many = _with_fallback("get_many")
    set_many = _with_fallback("set_many")
    delete_many = _with_fallback("delete_many")
    clear = _with_fallback("clear")
