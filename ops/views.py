from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from ops import metrics, selectors


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches nothing else, so a database outage never restarts it."""
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when the database and (when configured) the broker answer, 503 otherwise."""
    database = selectors.database_reachable()
    broker = selectors.broker_reachable()
    checks = {
        "database": "ok" if database else "unavailable",
        "broker": {True: "ok", False: "unavailable", None: "in-process"}[broker],
    }
    ready = database and broker is not False
    body: dict[str, object] = {"status": "ok" if ready else "unavailable", "checks": checks}
    if database:
        body["queues"] = selectors.queue_liveness()
    return JsonResponse(body, status=200 if ready else 503)


@require_GET
@never_cache
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus scrape endpoint. With METRICS_TOKEN set it needs ``Authorization: Bearer <token>``;
    either way, expose it only to the monitoring network (see docker/README.md)."""
    token = settings.METRICS_TOKEN
    if token and not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
        return HttpResponse(status=404)
    return HttpResponse(metrics.scrape(), content_type=CONTENT_TYPE_LATEST)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The landing page: where the portal, the API documentation and the bureau admin are."""
    return render(request, "ops/home.html")
