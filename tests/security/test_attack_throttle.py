"""Attacks on the API's rate limits: a burst of concurrent calls racing the per-key counter, an insurer
spreading its calls over several keys, and creating keys concurrently to get past the cap on active keys.

The bursts go to a real gunicorn (two processes sharing Redis when REDIS_URL is set; one process with its
own memory otherwise) from 40 threads at once.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.test import Client
from rest_framework.test import APIClient

from insurer_portal.services import InsurerError, api_key_create, api_key_revoke, portal_user_create
from tenants.models import ApiKey, Insurer, InsurerUser
from tests.factories import InsurerFactory
from tests.gunicorn import Server, gunicorn_server
from tests.staff import otp_login

LIST = "/api/v1/underwriting-requests"
CALLS = 40


@pytest.fixture(autouse=True)
def _fresh_counters() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def away_from_the_hour_boundary() -> None:
    """Counters are fixed windows of an hour here: a burst must not straddle two of them."""
    remaining = 3600 - time.time() % 3600
    if remaining < 60:
        time.sleep(remaining + 1)


def burst(server: Server, keys: list[str]) -> list[tuple[int, str | None]]:
    """CALLS concurrent GETs, spread over ``keys``, released together: (status, Retry-After) each."""
    start = threading.Barrier(CALLS)

    def call(index: int) -> tuple[int, str | None]:
        client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            start.wait()
            client.request("GET", LIST, headers={"Authorization": f"Bearer {keys[index % len(keys)]}"})
            response = client.getresponse()
            response.read()
            return response.status, response.getheader("Retry-After")
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=CALLS) as pool:
        return list(pool.map(call, range(CALLS)))


@pytest.fixture
def server(transactional_db: None, tmp_path: Path) -> Iterator[Server]:
    rates = {"API_THROTTLE_RATE": "10/hour", "API_INSURER_THROTTLE_RATE": "15/hour", "API_MAX_ACTIVE_KEYS": "5"}
    # Two processes only share counters through Redis; without it one process keeps them in memory.
    workers = 2 if settings.REDIS_URL else 1
    with gunicorn_server(tmp_path, extra_env=rates, workers=workers, threads=20) as running:
        yield running


def test_forty_concurrent_calls_at_ten_an_hour_get_ten_answers(server: Server) -> None:
    _, key = api_key_create(insurer=InsurerFactory(slug="burst-life"))
    away_from_the_hour_boundary()
    answers = burst(server, [key])
    statuses = Counter(status for status, _ in answers)
    assert statuses == {200: 10, 429: 30}
    assert all(retry_after and 0 < int(retry_after) <= 3600 for status, retry_after in answers if status == 429)


def test_an_insurer_cannot_multiply_its_rate_with_more_keys(server: Server) -> None:
    insurer = InsurerFactory(slug="many-keys-life")
    keys = [api_key_create(insurer=insurer, name=f"system {n}")[1] for n in range(3)]
    away_from_the_hour_boundary()
    answers = burst(server, keys)
    # Three keys at 10 an hour each would answer 30: the insurer's own limit (15) holds across them.
    assert Counter(status for status, _ in answers) == {200: 15, 429: 25}
    # Another insurer has its own budget.
    _, outsider = api_key_create(insurer=InsurerFactory(slug="outsider-life"))
    assert server.request("GET", LIST, headers={"Authorization": f"Bearer {outsider}"})[0] == 200


def test_batch_items_count_against_the_insurer_and_a_refused_batch_uses_up_nothing(db: None, settings: Any) -> None:
    settings.API_BATCH_THROTTLE_RATE = "100/hour"
    settings.API_INSURER_BATCH_THROTTLE_RATE = "5/hour"
    insurer = InsurerFactory(slug="batch-life")
    first, second = APIClient(), APIClient()
    for client in (first, second):
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(insurer=insurer)[1]}")
    away_from_the_hour_boundary()
    batch = f"{LIST}/batch"
    assert first.post(batch, {"requests": [{}] * 3}, format="json").status_code == 202
    refused = second.post(batch, {"requests": [{}] * 3}, format="json")  # 6 items: over the insurer's 5
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert second.post(batch, {"requests": [{}] * 2}, format="json").status_code == 202  # 5: still fits


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL: concurrent transactions with row locks"
)
def test_concurrent_key_creation_cannot_pass_the_cap(transactional_db: None, settings: Any) -> None:
    settings.API_MAX_ACTIVE_KEYS = 3
    insurer = InsurerFactory(slug="key-race-life")
    start = threading.Barrier(12)

    def create(index: int) -> str:
        try:
            start.wait()
            api_key_create(insurer=insurer, name=f"racer {index}")
            return "created"
        except InsurerError as exc:
            return exc.code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = Counter(pool.map(create, range(12)))
    assert outcomes == {"created": 3, "too_many_keys": 9}
    assert ApiKey.objects.filter(insurer=insurer, revoked_at__isnull=True).count() == 3


def test_the_cap_is_explained_in_the_portal_and_the_command(db: None, settings: Any) -> None:
    settings.API_MAX_ACTIVE_KEYS = 2
    insurer = InsurerFactory(slug="capped-life")
    keys = [api_key_create(insurer=insurer)[0] for _ in range(2)]
    admin = portal_user_create(
        insurer=insurer, username="capped-admin", email="capped@example.com", role=InsurerUser.Role.ADMIN,
        password="capped-admin-password-1",
    )  # fmt: skip
    client = otp_login(Client(), admin.user)  # an insurer admin, signed in with both factors
    page = client.post("/portal/admin/api-keys/", {"name": "one too many"}, HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200
    assert "already has 2 active keys, the most allowed" in page.content.decode()
    assert Insurer.objects.get(pk=insurer.pk).api_keys.filter(revoked_at__isnull=True).count() == 2
    with pytest.raises(CommandError, match="revoke one"):
        call_command("create_api_key", "capped-life")
    api_key_revoke(key=keys[0])  # a revoked key frees its place
    assert client.post("/portal/admin/api-keys/", {"name": "replacement"}).status_code == 302
