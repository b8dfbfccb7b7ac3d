"""A real gunicorn serving the test database, for tests of what only a real server shows (threads held by
slow requests, the address a proxy forwards, bodies cut at the socket).

The server runs ``config.wsgi`` with the test settings against the test database the calling test uses
(PostgreSQL or the SQLite file), so rows the test makes (API keys, insurers) are visible to it; the test
must use ``transactional_db`` for that. ``extra_env`` overrides settings read from the environment.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connection

from tests.population import wait_for

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Server:
    port: int
    log_path: Path

    def request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, body: bytes | None = None,
        timeout: float = 15.0,
    ) -> tuple[int, dict[str, Any]]:  # fmt: skip
        """(status, JSON body); (0, {}) when the connection failed or timed out."""
        try:
            client = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            client.request(method, path, body=body, headers=dict(headers or {}))
            response = client.getresponse()
            raw = response.read()
        except OSError:
            return 0, {}
        try:
            return response.status, json.loads(raw) if raw else {}
        except ValueError:
            return response.status, {"raw": raw[:200].decode(errors="replace")}

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def database_url() -> str:
    """DATABASE_URL of the test database the calling test uses (PostgreSQL, or the SQLite file)."""
    settings_dict = connection.settings_dict
    if "postgresql" not in settings_dict["ENGINE"]:
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict["USER"] or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict["PASSWORD"] else ""
    host = settings_dict["HOST"] or "127.0.0.1"
    port = settings_dict["PORT"] or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def gunicorn_server(
    log_dir: Path, *, extra_env: Mapping[str, str] | None = None, workers: int = 1, threads: int = 4,
    settings_module: str = "config.settings.test",
) -> Iterator[Server]:  # fmt: skip
    """Start gunicorn (gthread) on a free loopback port and stop it at exit."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DATABASE_URL": database_url(),
        "TEST_WORKER_DATABASE_NAME": str(connection.settings_dict["NAME"]),
        "LOG_FORMAT": "json",
        **(extra_env or {}),
    }
    log_path = log_dir / f"gunicorn-{port}.log"
    command = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
               "--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread",
               "--timeout", "60", "--graceful-timeout", "5"]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(port=port, log_path=log_path)
    try:
        wait_for(
            lambda: process.poll() is None and server.request("GET", "/healthz", timeout=2)[0] == 200,
            timeout=30, interval=0.2, what=f"gunicorn answering (log: {log_path})",
        )  # fmt: skip
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
