"""Celery beat's periodic jobs for the embedded default (``make run``: no broker, tasks in-process).

Without a broker there is no beat process either, so nothing would chain the audit log, write its signed
anchors, sweep stuck requests or evaluate misuse flags: the demo's audit log would look broken to an
auditor after half a minute. ``make run`` sets ``EMBEDDED_BEAT=1``; the development server's serving
process (the autoreloader's child) then runs ``CELERY_BEAT_SCHEDULE`` itself on a daemon thread, each job
in-process at its own period, the way beat would send it. With a broker (``REDIS_URL``) it never starts:
beat does the work there. The worker heartbeat is left out: there are no workers to answer it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

START_DELAY = 3.0
SKIPPED = {"ops.tasks.broadcast_heartbeat"}  # asks workers to answer; there are none in-process


class EmbeddedBeat:
    """The schedule's jobs, each run when due. ``clock`` and ``run`` are replaceable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, run: Callable[[str], None] | None = None) -> None:
        self.clock = clock
        self.run = run or _run_task
        now = clock()
        self.jobs: dict[str, float] = {
            str(entry["task"]): float(entry["schedule"])  # type: ignore[arg-type]
            for entry in settings.CELERY_BEAT_SCHEDULE.values()
            if entry["task"] not in SKIPPED
        }
        # Every job once shortly after start, as beat does (after Django has finished loading the apps).
        self.due = dict.fromkeys(self.jobs, now + START_DELAY)

    def tick(self) -> list[str]:
        """Run every job that is due; returns their names. A failing job is logged and tried at its next
        period, never stops the others."""
        ran = []
        for task, period in self.jobs.items():
            now = self.clock()
            if now < self.due[task]:
                continue
            self.due[task] = now + period
            try:
                self.run(task)
            except Exception:  # a periodic job's failure is logged, the loop goes on
                logger.exception("embedded beat: %s failed", task)
            ran.append(task)
        return ran

    def seconds_to_next(self) -> float:
        return max(0.2, min(self.due.values()) - self.clock())


def _run_task(task: str) -> None:
    # Beat's task names are the tasks' dotted paths; importing the task also registers it.
    import_string(task).apply(throw=True)


def _loop(beat: EmbeddedBeat) -> None:
    while True:
        close_old_connections()  # this thread's own connection, as after a request
        beat.tick()
        close_old_connections()
        time.sleep(beat.seconds_to_next())


def maybe_start() -> threading.Thread | None:
    """Start the thread in the development server's serving process when EMBEDDED_BEAT is on and no
    broker is configured; otherwise do nothing (management commands, tests, gunicorn, workers)."""
    if not settings.EMBEDDED_BEAT or settings.REDIS_URL or os.environ.get("RUN_MAIN") != "true":
        return None
    thread = threading.Thread(target=_loop, args=(EmbeddedBeat(),), name="embedded-beat", daemon=True)
    thread.start()
    logger.info("embedded beat: running %s periodic jobs in-process", len(settings.CELERY_BEAT_SCHEDULE) - 1)
    return thread
