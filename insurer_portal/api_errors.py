"""One JSON error shape for the whole API: ``{"error": {"code", "message", "fields"}}``.

Every service's refusal (``audit.errors.AppError`` and its subclasses) maps to HTTP here, once, by its
``code``. Unexpected exceptions become a bare 500 with no stack trace and no input echoed back.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError
from django.utils.translation import gettext, gettext_noop
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from audit.errors import AppError

logger = logging.getLogger(__name__)

# Any other code is a 400: the client's input was refused.
# Messages services and this module send, here so that the catalog has them (error_response translates).
MESSAGES = (
    gettext_noop("The request has invalid fields."),
    gettext_noop("Not a valid ID."),
    gettext_noop("The request could not be read."),
    gettext_noop("The service is temporarily unavailable; retry later."),
    gettext_noop("Internal error; it has been logged."),
    gettext_noop("This Idempotency-Key was already used with a different request body."),
    gettext_noop("Not a valid resident ID (length, birth date or check character)."),
    gettext_noop("Not UTF-8 text."),
    gettext_noop("This is not valid base64."),
    gettext_noop("Send one file, in the part named file."),
    gettext_noop("Use an ISO 8601 date-time with a time zone, e.g. 2026-11-01T00:00:00+08:00."),
)

STATUS_FOR_CODE = {
    "invalid_input": status.HTTP_400_BAD_REQUEST,
    "idempotency_conflict": status.HTTP_409_CONFLICT,
    "not_found": status.HTTP_404_NOT_FOUND,
    "forbidden": status.HTTP_403_FORBIDDEN,
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        return body_too_large_response()
    if isinstance(exc, SuspiciousOperation):
        # Django's refusals of malformed requests (too many fields, a bad multipart boundary): the client's
        # fault, answered like Django answers them outside the API, never as a 500.
        return error_response(400, "bad_request", "The request could not be read.")
    if isinstance(exc, AppError):
        http_status = STATUS_FOR_CODE.get(exc.code, status.HTTP_400_BAD_REQUEST)
        return error_response(http_status, exc.code, exc.message, exc.fields)
    if isinstance(exc, DatabaseError):
        logger.error("database unavailable while serving the API: %s", exc.__class__.__name__)
        return error_response(503, "service_unavailable", "The service is temporarily unavailable; retry later.")
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled API error: %s", exc.__class__.__name__)
        return error_response(500, "server_error", "Internal error; it has been logged.")
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten(exc.detail)
        return error_response(400, "invalid_input", "The request has invalid fields.", fields, headers=response)
    code = str(getattr(exc, "default_code", "error"))
    message = str(getattr(exc, "detail", "")) or code
    return error_response(response.status_code, code, message, headers=response)


def body_too_large_body() -> dict[str, Any]:
    """The 413 envelope, also sent by ops.middleware before a view runs."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    message = gettext(
        "The request body is larger than the API accepts (%(limit)s bytes); send fewer items per call."
    ) % {"limit": limit}
    return error_body("request_too_large", message)


def body_too_large_response() -> Response:
    return Response(body_too_large_body(), status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {"error": AppError(code, message, fields=fields).as_dict()}


def error_response(
    http_status: int,
    code: str,
    message: str,
    fields: dict[str, list[str]] | None = None,
    *,
    headers: Response | None = None,
) -> Response:
    # One language per body: the message and the field errors in the request's language (LocaleMiddleware),
    # as DRF's own validation messages already are. Text without a catalog entry stays as it is.
    translated = {name: [gettext(text) for text in texts] for name, texts in (fields or {}).items()}
    response = Response(error_body(code, gettext(message), translated), status=http_status)
    if headers is not None:
        for name in ("Retry-After", "WWW-Authenticate"):
            if name in headers:
                response[name] = headers[name]
    return response


def flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as ``{"applicant.resident_id": ["..."]}``."""
    if isinstance(detail, dict):
        result: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors":
                name = prefix or "non_field_errors"
            result.update(flatten(value, name))
        return result
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {prefix or "non_field_errors": [str(item) for item in detail]}
        result = {}
        for index, item in enumerate(detail):
            result.update(flatten(item, f"{prefix}[{index}]"))
        return result
    return {prefix or "non_field_errors": [str(detail)]}
