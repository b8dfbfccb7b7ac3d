from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template import engines
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from ops import metrics, selectors

logger = logging.getLogger(__name__)

# The product's error page layout (templates/_error.html) for a body too large to read.
_TOO_LARGE_PAGE = (
    '{% extends "base.html" %}{% block title %}{{ title }}{% endblock %}'
    '{% block content %}{% include "_error.html" with code=413 title=title text=text %}{% endblock %}'
)


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
    """Prometheus scrape endpoint. With METRICS_TOKEN set it needs ``Authorization: Bearer <token>``.
    Without one it is open only where ``METRICS_REQUIRE_TOKEN`` is off (development); production settings
    turn it on, so an unset token closes the endpoint (404) instead of opening it. Either way, expose it
    only to the monitoring network (see docker/README.md)."""
    token = settings.METRICS_TOKEN
    if not token and settings.METRICS_REQUIRE_TOKEN:
        logger.warning("/metrics refused: METRICS_TOKEN is not set (docker/README.md, Health and metrics)")
        return HttpResponse(status=404)
    if token and not hmac.compare_digest(request.headers.get("Authorization", "").encode(), f"Bearer {token}".encode()):
        return HttpResponse(status=404)
    return HttpResponse(metrics.scrape(), content_type=CONTENT_TYPE_LATEST)


def request_too_large(request: HttpRequest, limit: int) -> HttpResponse:
    """413 for a portal or admin form whose body is over ``limit`` bytes (ops.middleware.RequestBodyLimitMiddleware)."""
    context = {
        "title": _("Too large to accept"),
        "text": _(
            "What you sent is larger than %(size)s MB, the most this site accepts at once. Go back and send a "
            "smaller file, or split a batch into several files."
        )
        % {"size": f"{limit / (1024 * 1024):.0f}"},
    }
    body = engines["django"].from_string(_TOO_LARGE_PAGE).render(context, request)
    return HttpResponse(body, status=413)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The landing page: where the portal, the API documentation and the bureau admin are."""
    return render(request, "ops/home.html")
