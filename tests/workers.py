"""Real Celery worker processes for integration tests.

The workers are ordinary ``celery worker`` processes started with the test settings and pointed at
the test database (TEST_WORKER_DATABASE_NAME), consuming the real Redis broker. Nothing is patched. On
PostgreSQL each group connects as its trust zone's own database role (TEST_WORKER_DATABASE_USER), made by
``manage.py db_roles`` on the test database, so the end-to-end tests run under the privileges of
ops/db_zones.py and fail where a zone's code needs one it is not granted.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from benchmarks.support import process_tree
from config.celery import app
from ops import db_zones

ROOT = Path(__file__).resolve().parent.parent

# The same split as scripts/workers.sh: one group per trust zone, named after it, the custodian alone on
# its own queue.
WORKER_GROUPS = {
    "domain": ["domain"],
    "scoring": ["scoring", "webhooks"],
    "custodian": ["custodian"],
}


@dataclass
class WorkerProcess:
    name: str
    queues: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class WorkerPool:
    database_name: str
    concurrency: int = 2
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    workers: dict[str, WorkerProcess] = field(default_factory=dict)
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="celery-workers-")))
    # Zone -> (database role, password), once roles_ensure has made them; a group named after a zone
    # connects as that zone's role.
    zone_roles: dict[str, tuple[str, str]] = field(default_factory=dict)

    def hostname(self, group: str) -> str:
        return f"{group}-{self.run_id}@test"

    def roles_ensure(self) -> None:
        """Create or update the zones' roles on the test database with ``manage.py db_roles`` (a prefix of
        the database's name, so test runs on one cluster do not share roles). Nothing on SQLite."""
        if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql" or self.zone_roles:
            return
        prefix = re.sub(r"[^a-z0-9_]", "_", self.database_name.lower())[:40] + "_"
        passwords = {zone: secrets.token_urlsafe(18) for zone in (*db_zones.ZONES, db_zones.OWNER)}
        password_file = self.log_dir / "db-role-passwords"
        password_file.write_text("".join(f"{zone}={password}\n" for zone, password in passwords.items()))
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "TEST_WORKER_DATABASE_NAME": self.database_name,
        }
        command = [sys.executable, "manage.py", "db_roles", "--prefix", prefix, "--password-file", str(password_file)]
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"db_roles failed:\n{result.stdout}{result.stderr}")
        self.zone_roles = {zone: (prefix + zone, passwords[zone]) for zone in db_zones.ZONES}

    def role_env(self, zone: str) -> dict[str, str]:
        """What makes a process connect as ``zone``'s role (nothing when there are no roles)."""
        if zone not in self.zone_roles:
            return {}
        user, password = self.zone_roles[zone]
        return {"TEST_WORKER_DATABASE_USER": user, "TEST_WORKER_DATABASE_PASSWORD": password}

    def start(self, groups: dict[str, list[str]] = WORKER_GROUPS, timeout: float = 60.0) -> None:
        app.control.purge()  # no message left over from an earlier run may reach these workers
        self.roles_ensure()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "TEST_WORKER_DATABASE_NAME": self.database_name,
            "PYTHONUNBUFFERED": "1",
        }
        for group, queues in groups.items():
            self.start_one(group, queues, env)
        self.wait_ready(timeout)

    def start_one(self, group: str, queues: list[str], env: dict[str, str]) -> WorkerProcess:
        log_path = self.log_dir / f"{group}.log"
        concurrency = 1 if group == "custodian" else self.concurrency
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "-Q", ",".join(queues), "-n", self.hostname(group), "-c", str(concurrency),
            "--pool", "prefork", "--without-gossip", "--without-mingle", "-l", "INFO",
        ]  # fmt: skip
        if "custodian" in queues:
            command += ["--include", "datadomain.custodian"]
        env = {**env, **self.role_env(group)}
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        worker = WorkerProcess(group, queues, process, log_path)
        self.workers[group] = worker
        return worker

    def wait_ready(self, timeout: float) -> None:
        expected = {self.hostname(group) for group in self.workers}
        deadline = time.monotonic() + timeout
        answered: set[str] = set()
        while time.monotonic() < deadline:
            for worker in self.workers.values():
                if worker.process.poll() is not None:
                    raise RuntimeError(f"worker {worker.name} exited early:\n{worker.log_tail()}")
            replies = app.control.ping(destination=sorted(expected), timeout=1.0) or []
            answered |= {name for reply in replies for name in reply}
            if answered >= expected:
                return
        logs = "\n".join(f"--- {w.name}\n{w.log_tail()}" for w in self.workers.values())
        raise RuntimeError(f"workers {sorted(expected - answered)} did not answer within {timeout}s\n{logs}")

    def kill(self, group: str, sig: int = signal.SIGKILL) -> None:
        """Kill a worker group's main process and its pool children (kill -9 for fault tests)."""
        worker = self.workers[group]
        # The pool children first and without starting a process (pkill took long enough for a child to
        # finish and acknowledge the task a fault test meant to interrupt).
        for child in process_tree(worker.process.pid) - {worker.process.pid}:
            try:
                os.kill(child, sig)
            except ProcessLookupError:
                continue
        worker.process.send_signal(sig)
        worker.process.wait(timeout=30)

    def stop(self) -> None:
        for worker in self.workers.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers.values():
            try:
                worker.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill(worker.name)
        self.workers.clear()
