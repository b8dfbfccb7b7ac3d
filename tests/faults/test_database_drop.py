"""The database connection drops under a running API server: it answers 503 (never 500), then recovers.

gunicorn serves the API from the test database through a TCP proxy on loopback; cutting the proxy
drops every open connection and refuses new ones, as a PostgreSQL restart or a network cut would.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from insurer_portal.services import api_key_create
from tests.factories import InsurerFactory
from tests.faults.proxy import CuttableProxy
from tests.population import wait_for
from tests.workers import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture
def api_server(transactional_db: None, tmp_path: Path) -> Iterator[tuple[int, CuttableProxy, str]]:
    settings_dict = connection.settings_dict
    if "postgresql" not in settings_dict["ENGINE"]:
        pytest.skip("the database-drop test cuts a PostgreSQL connection (set DATABASE_URL to PostgreSQL)")
    proxy = CuttableProxy((settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"] or 5432)))
    _, key = api_key_create(insurer=InsurerFactory(slug="drop-life"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    user = settings_dict["USER"] or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict["PASSWORD"] else ""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{user}{password}@127.0.0.1:{proxy.port}/{settings_dict['NAME']}",
        "TEST_WORKER_DATABASE_NAME": str(settings_dict["NAME"]),
        "CONN_MAX_AGE": "60",
        "LOG_FORMAT": "json",
    }
    log = (tmp_path / "gunicorn.log").open("wb")
    command = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
               "--workers", "1", "--threads", "2", "--worker-class", "gthread", "--timeout", "30"]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: get(port, "/healthz")[0] == 200, timeout=30, interval=0.2, what="gunicorn answering")
        yield port, proxy, key
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        proxy.close()


def get(port: int, path: str, key: str = "") -> tuple[int, dict[str, Any]]:
    try:
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        client.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
        response = client.getresponse()
        body = response.read()
    except OSError:
        return 0, {}
    try:
        return response.status, json.loads(body) if body else {}
    except ValueError:
        return response.status, {"raw": body[:200].decode(errors="replace")}


def test_api_answers_503_while_the_database_is_gone_and_recovers(api_server: tuple[int, CuttableProxy, str]) -> None:
    port, proxy, key = api_server
    url = "/api/v1/underwriting-requests"
    assert get(port, url, key)[0] == 200

    proxy.cut()
    started = time.monotonic()
    answers = [get(port, url, key) for _ in range(5)]
    assert time.monotonic() - started < 30, "requests must fail fast, not hang"
    assert {status for status, _ in answers} == {503}, answers
    assert answers[0][1]["error"]["code"] == "service_unavailable"
    ready_status, ready = get(port, "/readyz")
    assert ready_status == 503
    assert ready["checks"]["database"] == "unavailable"
    assert get(port, "/healthz")[0] == 200  # liveness: the process itself is fine, do not restart it

    proxy.restore()
    wait_for(lambda: get(port, url, key)[0] == 200, timeout=30, interval=0.5, what="the API recovering")
    assert get(port, "/readyz")[0] == 200
