"""gunicorn settings for the web container (environment-driven, see docker/.env.example)."""

from __future__ import annotations

import os
from typing import Any

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# A `GET ...?wait=N` holds its thread while it sleeps on the request's wake-up (no CPU). At most
# API_WAIT_MAX_PER_PROCESS calls wait at once (half of WEB_THREADS by default; keep it below WEB_THREADS), so
# /healthz, /readyz and other calls always find a free thread; further waiters are answered at once.
threads = int(os.environ.get("WEB_THREADS", "16"))
worker_class = "gthread"
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
# Access lines come from the application's JSON request log (with request ids, without query strings,
# which may carry search terms); gunicorn's own access log stays off.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Whose X-Forwarded-Proto gunicorn believes: the proxies the application trusts for X-Forwarded-For
# (TRUSTED_PROXIES, ops/client_address.py) unless FORWARDED_ALLOW_IPS says otherwise.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS") or os.environ.get("TRUSTED_PROXIES") or "127.0.0.1"


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the Prometheus multi-process files."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
