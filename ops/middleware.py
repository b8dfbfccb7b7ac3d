"""Request ids, one JSON access line per request, Prometheus HTTP metrics and the Content-Security-Policy."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from ops import metrics
from ops.logging import request_id_var

logger = logging.getLogger("ops.access")
REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is kept only when it is short and plain, so it cannot smuggle data into the logs.
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


def _route(request: HttpRequest) -> str:
    """The URL pattern, never the concrete path: bounded metric labels and no ids in them."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return "/" + (match.route or match.view_name or "unnamed").lstrip("/")


class RequestIdMiddleware:
    """Gives each request an id (the caller's ``X-Request-ID`` when plain, else a new one), echoes it in
    the response, tags every log line written meanwhile, and logs one access line and its metrics.

    The access line holds method, route pattern, status and duration: no query string (portal searches
    may carry names) and no path parameters beyond the pattern.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        supplied = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = supplied if _ACCEPTED_ID.fullmatch(supplied) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            elapsed = time.perf_counter() - started
            route = _route(request)
            response[REQUEST_ID_HEADER] = request_id
            metrics.observe_request(request.method or "?", route, response.status_code, elapsed)
            logger.info(
                "%s %s %s",
                request.method,
                route,
                response.status_code,
                extra={
                    "method": request.method,
                    "route": route,
                    "status": response.status_code,
                    "duration_ms": round(elapsed * 1000, 1),
                },
            )
            return response
        finally:
            request_id_var.reset(token)


class ContentSecurityPolicyMiddleware:
    """Sends ``settings.CONTENT_SECURITY_POLICY`` (Django 5.2 has no built-in CSP).

    The API documentation pages (Swagger UI, ReDoc) start themselves with inline scripts; only there is
    ``CONTENT_SECURITY_POLICY_DOCS`` used instead. They show no personal data.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = getattr(settings, "CONTENT_SECURITY_POLICY", "")
        if request.path.startswith(("/api/docs/", "/api/redoc/")):
            policy = getattr(settings, "CONTENT_SECURITY_POLICY_DOCS", policy)
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response
