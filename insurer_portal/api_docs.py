"""What the OpenAPI schema says beyond the views: the error responses every insurer API call can get, the
webhooks the bureau sends (payload, signature, retries) and the guide at the top of the API docs.

Referenced from ``SPECTACULAR_SETTINGS`` (schema class, webhooks, postprocessing hook), so that
``/api/schema/``, Swagger UI and ReDoc describe the same thing.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, OpenApiWebhook, extend_schema
from rest_framework import serializers

from insurer_portal.api_errors import body_too_large_body
from insurer_portal.authentication import ApiKeyAuthentication
from underwriting.serializers import RequestOutputSerializer
from underwriting.services.webhooks import EVENT_FOR_STATUS, SIGNATURE_HEADER, sign

# --- errors every call can get -------------------------------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer[Any]):
    code = serializers.CharField(help_text="Machine-readable: invalid_input, not_authenticated, throttled, ...")
    message = serializers.CharField(help_text="For your logs; never contains personal data.")
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        help_text='Field path (e.g. "applicant.resident_id") to its messages; empty when no field is at fault.',
    )


class ErrorSerializer(serializers.Serializer[Any]):
    """Every error body (insurer_portal.api_errors builds them), for the schema."""

    error = ErrorDetailSerializer()


def error_example(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def error_response(description: str, *examples: tuple[str, dict[str, Any]]) -> OpenApiResponse:
    return OpenApiResponse(
        ErrorSerializer,
        description=description,
        examples=[OpenApiExample(name, value=value, response_only=True) for name, value in examples],
    )


INVALID_INPUT = error_example(
    "invalid_input", "The request has invalid fields.", {"applicant.resident_id": ["This field is required."]}
)
STANDARD_ERRORS: dict[int, OpenApiResponse] = {
    400: error_response(
        "`invalid_input`: the request has invalid fields. `fields` maps each field's path to its messages; "
        "nothing was stored. Correct the fields and send the request again.",
        ("Invalid fields", INVALID_INPUT),
    ),
    401: error_response(
        "No usable API key: `not_authenticated` (no `Authorization` header) or `authentication_failed` (not "
        "`Bearer <API key>`, or a key that does not exist or was revoked). Answered with "
        "`WWW-Authenticate: Bearer`. Ask your insurer's admin for a key (portal, API keys).",
        ("No key", error_example("not_authenticated", "Authentication credentials were not provided.")),
        ("Revoked key", error_example("authentication_failed", "Invalid or revoked API key.")),
    ),
    403: error_response(
        "`permission_denied`: the key is valid but may not make this call. Not a matter of time: the same "
        "call with the same key is refused again. (Another insurer's request is a 404, never a 403.)",
        ("Not allowed", error_example("permission_denied", "You do not have permission to perform this action.")),
    ),
    429: error_response(
        "`throttled`: past a rate limit of your API key or of your insurer over all its keys (`API_THROTTLE_RATE`, "
        "`API_INSURER_THROTTLE_RATE`; batch items and consent-form uploads have their own). Nothing was stored. "
        "Wait the seconds the `Retry-After` header gives, then send the same call again (with the same "
        "`Idempotency-Key`).",
        ("Throttled", error_example("throttled", "Request was throttled. Expected available in 42 seconds.")),
    ),
}


def other_error_example(code: int) -> dict[str, Any] | None:
    """The body of a declared error response that has none of its own, by status."""
    examples = {
        404: error_example("not_found", "No such underwriting request."),
        409: error_example(
            "idempotency_conflict", "This Idempotency-Key was used with another body; use a new key for a new request."
        ),
        413: body_too_large_body(),
        415: error_example("unsupported_media_type", 'Unsupported media type "text/plain" in request.'),
    }
    return examples.get(code)


RESPONSE_HEADERS = [
    OpenApiParameter(
        "Retry-After",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=[429],
        description="Seconds until the limit that refused the call allows it again.",
    ),
    OpenApiParameter(
        "WWW-Authenticate",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[401],
        description="`Bearer`: the scheme the API expects.",
    ),
]


class InsurerApiSchema(AutoSchema):
    """drf-spectacular's schema, with the errors every insurer API operation can answer documented on each
    of them, with their bodies: a client's generated code and its developers see them where they look."""

    def _is_insurer_api(self) -> bool:
        return ApiKeyAuthentication in getattr(self.view, "authentication_classes", [])

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        if not self._is_insurer_api():
            return responses
        for code, response in STANDARD_ERRORS.items():
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(response, str(code), direction=direction)
        return dict(sorted(responses.items()))

    def _get_response_for_code(
        self, serializer: Any, status_code: str, media_types: Any = None, direction: Any = "response"
    ) -> dict[str, Any]:
        if self._is_insurer_api():
            serializer = with_error_body(int(status_code), serializer)
        response: dict[str, Any] = super()._get_response_for_code(  # type: ignore[no-untyped-call]
            serializer, status_code, media_types, direction
        )
        return response

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        if self._is_insurer_api():
            parameters += RESPONSE_HEADERS
        return parameters


def with_error_body(code: int, response: Any) -> Any:
    """A declared error response without a body gets the error envelope and, unless it has its own, the
    standard example; its description stays."""
    if code < 400 or not isinstance(response, OpenApiResponse) or response.response is not None:
        return response
    standard = STANDARD_ERRORS.get(code)
    example = other_error_example(code)
    if response.examples:
        examples = response.examples
    elif standard is not None:
        examples = standard.examples
    else:
        examples = [OpenApiExample("Error", value=example, response_only=True)] if example else []
    return OpenApiResponse(ErrorSerializer, description=response.description, examples=examples)


# --- webhooks ------------------------------------------------------------------------------------------

TEST_EVENT = "test.ping"
EVENT_TYPES = [*EVENT_FOR_STATUS.values(), TEST_EVENT]


class WebhookEventSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField(
        help_text="The event's id: the same on every retry and replay of this event. Receivers dedupe by it."
    )
    type = serializers.ChoiceField(choices=EVENT_TYPES, help_text="What happened; see the list of events.")
    created_at = serializers.DateTimeField(
        help_text="When the event was created (the request's transition), not when this attempt was sent."
    )
    data = RequestOutputSerializer(  # type: ignore[assignment]  # a field named like Serializer.data
        required=False,
        help_text="The request as `GET /api/v1/underwriting-requests/{id}` reads it; absent for test.ping.",
    )


EVENT_SUMMARY = {
    "request.awaiting_consent": "A request waits for the resident's confirmation",
    "request.completed": "A request has its tier",
    "request.rejected": "A request was rejected",
    "request.unrated": "A request could not be rated",
    "request.failed": "A request failed",
    TEST_EVENT: "A test event",
}
EVENT_HELP = {
    "request.awaiting_consent": (
        "A request of an insurer in resident-confirmation mode waits for the resident to approve it on the "
        "bureau's resident page (status `awaiting_consent`). Another event follows when it ends."
    ),
    "request.completed": (
        "The request has its tier: `data.result` holds the tier, its label, the decision and any table rating."
    ),
    "request.rejected": (
        "The request was refused; `data.reason` says why (`not_verified`, `rate_limited`, `manual_not_approved`, "
        "`invalid_input`, `consent_declined`, `consent_expired`, `consent_withdrawn`)."
    ),
    "request.unrated": "The data bureau has no records to rate the applicant on; nothing was assessed.",
    "request.failed": "Scoring failed after bounded retries; submit the request again later.",
    TEST_EVENT: (
        "Sent when your admin tests the endpoint in the portal (no `data`): checks the receiver and its "
        "signature check."
    ),
}
EXAMPLE_REQUEST = {
    "id": "0b8f5b8e-3a8d-4b35-9d44-6f2f7f1c2a10",
    "reference": "APP-2026-000123",
    "applicant": {"resident_id_masked": "110105********0021"},
    "manual": {"slug": "charlson-acci", "version": 1},
    "created_at": "2026-11-23T10:00:00.120000+08:00",
}
EXAMPLE_EVENT_DATA: dict[str, dict[str, Any]] = {
    "request.awaiting_consent": {"status": "awaiting_consent", "reason": None, "result": None, "completed_at": None},
    "request.completed": {
        "status": "completed",
        "reason": None,
        "result": {"tier": "B", "label": "Standard", "decision": "accept", "table_rating": None},
        "completed_at": "2026-11-23T10:00:00.180000+08:00",
    },
    "request.rejected": {
        "status": "rejected",
        "reason": "rate_limited",
        "result": None,
        "completed_at": "2026-11-23T10:00:00.150000+08:00",
    },
    "request.unrated": {
        "status": "unrated",
        "reason": None,
        "result": None,
        "completed_at": "2026-11-23T10:00:00.160000+08:00",
    },
    "request.failed": {
        "status": "failed",
        "reason": None,
        "result": None,
        "completed_at": "2026-11-23T10:05:00.000000+08:00",
    },
}


def example_event(event_type: str) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "5d0c1f7e-8a4b-4f0e-9c61-2b7d3e9a1c44",
        "type": event_type,
        "created_at": "2026-11-23T10:00:00.190000+08:00",
    }
    if event_type in EXAMPLE_EVENT_DATA:
        event["data"] = {**EXAMPLE_REQUEST, **EXAMPLE_EVENT_DATA[event_type]}
    return event


RECEIVER_RESPONSES = {
    "2XX": OpenApiResponse(
        description="Received. Any 2xx status ends the event's deliveries; answer quickly and work afterwards."
    ),
    "default": OpenApiResponse(
        description=(
            "Any other status, a redirect (never followed) or no answer within the timeout is a failed attempt: "
            "the event is sent again later (see the guide's retries)."
        )
    ),
}


def _webhook(event_type: str) -> OpenApiWebhook:
    return OpenApiWebhook(
        name=event_type,
        decorator=extend_schema(
            summary=EVENT_SUMMARY[event_type],
            description=f"{EVENT_HELP[event_type]}\n\nSigned in the `{SIGNATURE_HEADER}` header: see the guide.",
            request=WebhookEventSerializer,
            responses=RECEIVER_RESPONSES,
            examples=[OpenApiExample(event_type, value=example_event(event_type))],
        ),
    )


# One per event, named so that SPECTACULAR_SETTINGS["WEBHOOKS"] can import each (in EVENT_TYPES' order).
AWAITING_CONSENT_WEBHOOK = _webhook("request.awaiting_consent")
COMPLETED_WEBHOOK = _webhook("request.completed")
REJECTED_WEBHOOK = _webhook("request.rejected")
UNRATED_WEBHOOK = _webhook("request.unrated")
FAILED_WEBHOOK = _webhook("request.failed")
TEST_WEBHOOK = _webhook(TEST_EVENT)
SIGNATURE_PARAMETER = {
    "name": SIGNATURE_HEADER,
    "in": "header",
    "required": True,
    "description": (
        '`t=<unix seconds>,v1=<hex HMAC-SHA256(endpoint secret, "<t>.<raw body>")>`. Recompute it over the raw '
        "body as received, compare in constant time and refuse a `t` more than 5 minutes away from your clock."
    ),
    "schema": {"type": "string", "example": "t=1795400000,v1=5f1c...e2"},
}


# --- the guide above the operations --------------------------------------------------------------------

EXAMPLE_SECRET = "whsec_example-secret-do-not-use"  # noqa: S105  # nosec B105: documentation only, matches nothing
EXAMPLE_TIMESTAMP = 1795400000


def signature_example() -> tuple[bytes, str]:
    """The worked example's body and its header, computed by the code that signs real deliveries."""
    body = orjson.dumps(example_event("request.completed"))
    return body, sign(EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, body)


def retry_delays() -> list[int]:
    """Seconds between the attempts of one event (``webhook_deliver``'s schedule under the settings)."""
    base = float(settings.WEBHOOK_RETRY_BASE_SECONDS)
    return [round(base * 2 ** (attempt - 1)) for attempt in range(1, int(settings.WEBHOOK_MAX_ATTEMPTS))]


def guide() -> str:
    body, header = signature_example()
    digest = header.split("v1=", 1)[1]
    delays = retry_delays()
    return GUIDE.format(
        description=settings.SPECTACULAR_SETTINGS["DESCRIPTION"],
        batch_max=settings.API_BATCH_MAX_ITEMS,
        throttle=settings.API_THROTTLE_RATE,
        insurer_throttle=settings.API_INSURER_THROTTLE_RATE,
        events="\n".join(f"- `{name}`: {EVENT_HELP[name]}" for name in EVENT_TYPES),
        header_name=SIGNATURE_HEADER,
        secret=EXAMPLE_SECRET,
        timestamp=EXAMPLE_TIMESTAMP,
        body=body.decode(),
        digest=digest,
        header=header,
        attempts=settings.WEBHOOK_MAX_ATTEMPTS,
        timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
        delays=", ".join(f"{delay} s" for delay in delays),
        total=sum(delays),
    )


GUIDE = """{description}

## Calling the API

Send `Authorization: Bearer <API key>` on every call (your insurer's admin creates keys in the portal,
API keys). Submit with `POST /api/v1/underwriting-requests` (or up to {batch_max} at once with
`POST /api/v1/underwriting-requests/batch`), then read the result with
`GET /api/v1/underwriting-requests/{{id}}?wait=10` or receive it as a webhook.

Every error is `{{"error": {{"code", "message", "fields"}}}}`: `code` is for your program, `message` for your
logs, `fields` maps an input field's path (`applicant.resident_id`) to its messages. Each operation lists
the statuses it can answer; all of them can answer `400` (`invalid_input`), `401` (no usable key), `403`
and `429` (`throttled`, with `Retry-After` in seconds). Calls count against your key's limit
({throttle}) and your insurer's over all its keys ({insurer_throttle}).

## Webhooks

When a request reaches one of the states below, the bureau POSTs an event to each active endpoint your
insurer's admin registered (portal, Webhooks), as JSON: `{{"id", "type", "created_at", "data"}}`, `data`
being the request as the API reads it (never a score, name or full resident ID). Events:

{events}

### Verifying the signature

Each POST carries `{header_name}: t=<unix seconds>,v1=<hex>`, where `v1` is the HMAC-SHA256, keyed with the
endpoint's signing secret (`whsec_...`, shown once when the endpoint is created or its secret re-issued),
of the timestamp, a full stop and the raw body: `"<t>.<body>"`. To verify: take `t` and `v1` from the
header, recompute the HMAC over the bytes you received (before parsing the JSON), compare in constant
time, and refuse a `t` more than 5 minutes from your clock (a replayed old delivery).

Worked example, with the secret `{secret}` (a made-up one) and `t = {timestamp}`:

    body:   {body}
    signed: {timestamp}.<body>
    v1:     {digest}
    header: {header}

Check it with OpenSSL (`$BODY` holding the body exactly as above):

    printf '%s.%s' {timestamp} "$BODY" | openssl dgst -sha256 -hmac '{secret}'

or in Python:

    import hashlib, hmac, time

    def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        if abs(time.time() - timestamp) > tolerance:
            return False
        expected = hmac.new(secret.encode(), f"{{timestamp}}.".encode() + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, parts["v1"])

### Retries and backoff

Answer any 2xx within {timeout} seconds and the event is delivered. Anything else (another status, a
redirect, which is never followed, no answer, a timeout, a TLS failure) is a failed attempt, and the event
is sent again with exponential backoff: up to {attempts} attempts, the next one {delays} after the one
before (about {total} seconds in all). After the last attempt the delivery is marked failed; the portal's
webhook page lists each delivery with the HTTP status it got, and your admin or the bureau can send it
again. Deliveries are at least once and not ordered: the same event (same `id`) may arrive twice, so
dedupe by `id`, and read `data.status` rather than assuming an order. A retry is signed anew with the
endpoint's current secret and a new `t`.
"""


def add_guide_and_webhook_headers(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook: the guide as the schema's description, and the signature header on every webhook
    (drf-spectacular's webhooks take no parameters of their own)."""
    result["info"]["description"] = guide()
    for path_item in result.get("webhooks", {}).values():
        for operation in path_item.values():
            operation["parameters"] = [SIGNATURE_PARAMETER]
    return result
