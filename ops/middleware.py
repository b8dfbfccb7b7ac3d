"""Request ids, one JSON access line per request, Prometheus HTTP metrics and the Content-Security-Policy."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from csp.constants import HEADER
from csp.middleware import CSPMiddleware, PolicyParts
from csp.utils import default_config
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse

from insurer_portal.api_errors import body_too_large_body
from ops import metrics
from ops.logging import param_names, redact, redact_path, request_id_var
from ops.views import request_too_large

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


def _static_prefix() -> str:
    return "/" + str(settings.STATIC_URL or "static/").strip("/") + "/"


class RequestIdMiddleware:
    """Gives each request an id (the caller's ``X-Request-ID`` when plain, else a new one), echoes it in
    the response, tags every log line written meanwhile, and logs one access line and its metrics.

    The access line holds method, route pattern, the path with every segment that could hold personal data
    masked (ops.logging.redact_path), the query's parameter names but never their values (portal searches
    may carry names), status and duration. No Referer, User-Agent or other header is logged.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        supplied = request.headers.get(REQUEST_ID_HEADER, "")
        # Plain and not shaped like a resident ID: the id is written on every line, unredacted.
        plain = _ACCEPTED_ID.fullmatch(supplied) and redact(supplied) == supplied
        request_id = supplied if plain else uuid.uuid4().hex
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
                    "path": redact_path(request.path, static_prefix=_static_prefix()),
                    "params": param_names(request.META.get("QUERY_STRING", "")),
                    "status": response.status_code,
                    "duration_ms": round(elapsed * 1000, 1),
                },
            )
            return response
        finally:
            request_id_var.reset(token)


class RequestBodyLimitMiddleware:
    """Answers 413 to a body declared larger than the site reads, before anything reads it: an API body
    over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` in the API's error envelope, any other over
    ``REQUEST_BODY_MAX_BYTES`` with the product's error page. (Django's own limit leaves file uploads out,
    so a huge upload would otherwise be spooled to disk in full, and its form limit is a 400, or a 500 in
    the API.) A body without a length is never read by Django, so the declared length is the one to check.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # Django reads no body for a length it cannot parse
        api = request.path_info.startswith("/api/")
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE if api else settings.REQUEST_BODY_MAX_BYTES
        if limit is None or length <= limit:
            return self.get_response(request)
        if api:
            return JsonResponse(body_too_large_body(), status=413)
        return request_too_large(request, limit)


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware (``settings.CONTENT_SECURITY_POLICY``), with two additions.

    The API documentation pages (Swagger UI, ReDoc) start themselves with inline scripts; only there is
    ``CONTENT_SECURITY_POLICY_DOCS`` used instead. They show no personal data. And the directives come in
    the order the settings list them (django-csp builds them from a set), so the header is the same on
    every request and in every process.
    """

    DOCS_PREFIXES = ("/api/docs/", "/api/redoc/")

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if not report_only and parts.config is None and request.path_info.startswith(self.DOCS_PREFIXES):
            parts.config = default_config(settings.CONTENT_SECURITY_POLICY_DOCS["DIRECTIVES"])
        return parts

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        response = super().process_response(request, response)
        docs = request.path_info.startswith(self.DOCS_PREFIXES)
        policy = settings.CONTENT_SECURITY_POLICY_DOCS if docs else settings.CONTENT_SECURITY_POLICY
        order = list(policy["DIRECTIVES"])
        if HEADER in response:
            response[HEADER] = _in_order(response[HEADER], order)
        return response


def _in_order(header: str, order: list[str]) -> str:
    def position(directive: str) -> tuple[int, str]:
        name = directive.split(" ", 1)[0]
        return (order.index(name) if name in order else len(order), name)

    return "; ".join(sorted(header.split("; "), key=position))
