"""With Redis unreachable the shared cache keeps working per process: throttles and lockouts stay on."""

from __future__ import annotations

import pytest
from django.conf import settings

from insurer_portal.counters import Increment
from ops.cache import RedisWithLocalFallback


def test_unreachable_redis_falls_back_to_local_memory() -> None:
    cache = RedisWithLocalFallback("redis://127.0.0.1:1/0", {"OPTIONS": {"socket_connect_timeout": 0.2}})
    cache.set("throttle", [1.0, 2.0], 60)
    assert cache.get("throttle") == [1.0, 2.0]
    assert cache.add("failures", 0, 60) is True
    assert cache.incr("failures") == 1
    cache.delete("failures")
    assert cache.get("failures") is None


def _limited(key: str, limit: int) -> Increment:
    return Increment(key, 2, timeout=60, limit=limit)


def _counts_within_limits(cache: RedisWithLocalFallback) -> None:
    first, second = _limited("key-window", 5), _limited("insurer-window", 3)
    cache.delete_many([first.key, second.key])
    assert cache.add_within_limits([first, second]) is None
    assert (cache.get(first.key), cache.get(second.key)) == (2, 2)
    # The second window goes past 3: both shares are taken back and the first window's count is untouched.
    assert cache.add_within_limits([first, second]) == 1
    assert (cache.get(first.key), cache.get(second.key)) == (2, 2)
    # A window that refuses first leaves the ones after it alone.
    assert cache.add_within_limits([_limited(first.key, 1), second]) == 0
    assert (cache.get(first.key), cache.get(second.key)) == (2, 2)
    cache.delete_many([first.key, second.key])


def test_limited_counters_fall_back_to_local_memory() -> None:
    _counts_within_limits(RedisWithLocalFallback("redis://127.0.0.1:1/0", {"OPTIONS": {"socket_connect_timeout": 0.2}}))


def test_limited_counters_in_one_round_trip_on_redis() -> None:
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL")
    cache = RedisWithLocalFallback(settings.REDIS_URL, {})
    _counts_within_limits(cache)
    # The script's counters are the ones Django's cache API reads and expire like those ``add`` makes.
    cache.add_within_limits([_limited("expiring", 5)])
    assert 0 < cache._cache.get_client(None).ttl(cache.make_and_validate_key("expiring")) <= 60
    cache.delete("expiring")
