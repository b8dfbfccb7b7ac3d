"""Shared plumbing of the benchmarks: scratch PostgreSQL databases and ``manage.py`` in a child."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent


def postgres_url() -> str:
    """The server to benchmark on: BENCH_DATABASE_URL or DATABASE_URL, if PostgreSQL; else ''."""
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else ""


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def admin_connection(url: str) -> Any:
    import psycopg2

    connection = psycopg2.connect(with_database(url, "postgres"))
    connection.autocommit = True
    return connection


def scratch_database(url: str, prefix: str) -> str:
    """A new empty database beside the one in ``url``; returns its URL."""
    name = f"{prefix}_{os.getpid()}"
    connection = admin_connection(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    return with_database(url, name)


def drop_database(base_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    connection = admin_connection(base_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        connection.close()


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _parent_of(pid: str) -> int:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def process_tree(root: int) -> set[int]:
    """``root`` and all its descendants (Linux /proc); gunicorn and Celery fork their workers."""
    tree, grew = {root}, True
    while grew:
        grew = False
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in tree:
                try:
                    if _parent_of(entry) in tree:
                        tree.add(int(entry))
                        grew = True
                except OSError:
                    continue
    return tree


def postgres_backends() -> set[int]:
    """The PostgreSQL server's processes on this machine (the benchmark's backends among them)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm", encoding="utf-8") as comm:
                    if comm.read().strip() == "postgres":
                        found.add(int(entry))
            except OSError:
                continue
    return found


def cpu_seconds(pids: set[int]) -> dict[int, float]:
    """User + system CPU seconds of each of ``pids`` still running."""
    found = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            found[pid] = (int(fields[11]) + int(fields[12])) / _TICKS
        except OSError:
            continue
    return found


class CpuMeter:
    """CPU seconds spent by named groups of processes between ``start`` and ``stop``; it depends much less
    on what else the machine runs than wall time does. Each group is found again at ``stop``, so a
    process started meanwhile counts in full; one that exited meanwhile (PostgreSQL closes a connection
    after CONN_MAX_AGE, say) is missing from the figure."""

    def __init__(self, groups: dict[str, Callable[[], set[int]]]) -> None:
        self.groups = groups
        self.before: dict[str, dict[int, float]] = {}
        self.spent: dict[str, float] = {}

    def start(self) -> None:
        self.before = {name: cpu_seconds(find()) for name, find in self.groups.items()}

    def stop(self) -> dict[str, float]:
        self.spent = {}
        for name, find in self.groups.items():
            now, before = cpu_seconds(find()), self.before[name]
            self.spent[name] = sum(seconds - before.get(pid, 0.0) for pid, seconds in now.items())
        return self.spent

    def per_request_ms(self, requests: int) -> str:
        parts = [f"{name} {1000 * seconds / max(requests, 1):.1f}" for name, seconds in self.spent.items()]
        total = 1000 * sum(self.spent.values()) / max(requests, 1)
        return ", ".join(parts) + f"; total {total:.1f} ms of CPU per request"
