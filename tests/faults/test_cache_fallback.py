"""With Redis unreachable the shared cache keeps working per process: throttles and lockouts stay on."""

from __future__ import annotations

from ops.cache import RedisWithLocalFallback


def test_unreachable_redis_falls_back_to_local_memory() -> None:
    cache = RedisWithLocalFallback("redis://127.0.0.1:1/0", {"OPTIONS": {"socket_connect_timeout": 0.2}})
    cache.set("throttle", [1.0, 2.0], 60)
    assert cache.get("throttle") == [1.0, 2.0]
    assert cache.add("failures", 0, 60) is True
    assert cache.incr("failures") == 1
    cache.delete("failures")
    assert cache.get("failures") is None
