"""Celery wiring for observability: request ids travel with tasks, and task outcomes become metrics.

Connected in ``OpsConfig.ready`` so that every process (web, workers, beat) has it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import signals

from ops import metrics
from ops.logging import request_id_var

HEADER = "request_id"
_started: dict[str, float] = {}


@signals.before_task_publish.connect
def _attach_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    request_id = request_id_var.get()
    if headers is not None and request_id != "-" and HEADER not in headers:
        headers[HEADER] = request_id


@signals.task_prerun.connect
def _task_started(task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    request_id = getattr(getattr(task, "request", None), HEADER, None) or f"task-{task_id}"
    request_id_var.set(str(request_id))
    _started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def _task_finished(task_id: str = "", task: Any = None, state: str | None = None, **kwargs: Any) -> None:
    started = _started.pop(task_id, None)
    name = getattr(task, "name", "unknown")
    outcome = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}.get(state or "", "other")
    metrics.observe_task(name, outcome, None if started is None else time.perf_counter() - started)
    request_id_var.set("-")


@signals.worker_ready.connect
def _serve_worker_metrics(**kwargs: Any) -> None:
    """With WORKER_METRICS_PORT set, the worker's main process serves the pool's task metrics."""
    port = os.environ.get("WORKER_METRICS_PORT", "")
    if not port:
        return
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(metrics.TASKS)
        registry.register(metrics.TASK_FAILURES)
        registry.register(metrics.TASK_LATENCY)
    # Containers set WORKER_METRICS_ADDR=0.0.0.0 so the scraper reaches it; elsewhere loopback only.
    start_http_server(int(port), addr=os.environ.get("WORKER_METRICS_ADDR", "127.0.0.1"), registry=registry)
