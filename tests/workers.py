"""Real Celery worker processes for integration tests.

The workers are ordinary ``celery worker`` processes started with the test settings and pointed at
the test database (TEST_WORKER_DATABASE_NAME), consuming the real Redis broker. Nothing is patched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from config.celery import app

ROOT = Path(__file__).resolve().parent.parent

# The same split as scripts/workers.sh: the custodian alone on its own queue.
WORKER_GROUPS = {
    "main": ["domain", "scoring", "webhooks"],
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

    def hostname(self, group: str) -> str:
        return f"{group}-{self.run_id}@test"

    def start(self, groups: dict[str, list[str]] = WORKER_GROUPS, timeout: float = 60.0) -> None:
        app.control.purge()  # no message left over from an earlier run may reach these workers
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
        subprocess.run(["pkill", f"-{sig}", "-P", str(worker.process.pid)], check=False)
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
