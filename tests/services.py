"""Which real services the suite may use, and the rule for when they are missing.

With DATABASE_URL/REDIS_URL set, the services must answer: an unreachable one fails the run. In CI
(CI=true) Redis is required even when REDIS_URL is unset. Only a local run with no REDIS_URL skips the
tests that need worker processes.
"""

from __future__ import annotations

import os

import pytest
import redis


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_redis() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        if in_ci():
            pytest.fail("CI requires REDIS_URL: integration tests run against a real Redis broker.")
        pytest.skip("REDIS_URL is not set: integration tests with worker processes need Redis.")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at REDIS_URL is unreachable ({exc.__class__.__name__}); start it or unset REDIS_URL.")
    return url
