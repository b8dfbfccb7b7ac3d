"""Prometheus metrics: HTTP requests and latencies, Celery task outcomes, queue depths, request states.

Labels are bounded and never personal: HTTP routes are URL patterns, tasks are task names, queues and
states come from fixed lists. Under gunicorn or Celery's prefork pool each process writes its own files in
``PROMETHEUS_MULTIPROC_DIR`` and a scrape adds them up; without it (development) one in-process registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from django.db import DatabaseError
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

HTTP_REQUESTS = Counter("underwriting_http_requests_total", "HTTP requests answered.", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "underwriting_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
TASKS = Counter("underwriting_celery_tasks_total", "Celery tasks finished, by outcome.", ["task", "outcome"])
TASK_FAILURES = Counter("underwriting_celery_task_failures_total", "Celery tasks that raised.", ["task"])
TASK_LATENCY = Histogram(
    "underwriting_celery_task_duration_seconds",
    "Run time of a Celery task.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)


def observe_task(task: str, outcome: str, seconds: float | None = None) -> None:
    TASKS.labels(task, outcome).inc()
    if outcome == "failed":
        TASK_FAILURES.labels(task).inc()
    if seconds is not None:
        TASK_LATENCY.labels(task).observe(seconds)


class StateCollector(Collector):
    """Read at scrape time: each queue's depth in Redis, requests per status, dependency reachability."""

    def collect(self) -> Iterator[Metric]:
        from ops import selectors

        up = GaugeMetricFamily("underwriting_dependency_up", "1 when a dependency answers.", labels=["dependency"])
        database = selectors.database_reachable()
        up.add_metric(["database"], float(database))
        depths = selectors.queue_depths()
        if depths is not None:
            up.add_metric(["broker"], float(bool(depths)))
            depth = GaugeMetricFamily("underwriting_queue_depth", "Messages waiting in a queue.", labels=["queue"])
            for queue, count in depths.items():
                depth.add_metric([queue], float(count))
            yield depth
        yield up
        if database:
            try:
                counts = selectors.requests_by_status()
            except DatabaseError:  # reachable but not migrated (yet): the scrape itself must not fail
                return
            states = GaugeMetricFamily("underwriting_requests", "Underwriting requests by status.", labels=["status"])
            for status, count in counts.items():
                states.add_metric([status], float(count))
            yield states


def scrape() -> bytes:
    """The text exposition of every metric, summed over processes in multi-process mode."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for collector in (HTTP_REQUESTS, HTTP_LATENCY, TASKS, TASK_FAILURES, TASK_LATENCY):
            registry.register(collector)
    registry.register(StateCollector())
    return generate_latest(registry)
