"""REST API v1 for insurers' systems. Views parse, check access, call one service and render."""

from __future__ import annotations

import base64
import binascii
import math
import threading
import unicodedata
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from django.conf import settings
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from insurer_portal.api_errors import error_body, flatten
from insurer_portal.authentication import (
    ApiKeyAuthentication,
    ApiKeyBatchItemThrottle,
    ApiKeyRateThrottle,
    InsurerPrincipal,
)
from underwriting import selectors as uw_selectors
from underwriting.errors import UnderwritingError
from underwriting.models import RequestStatus, UnderwritingRequest
from underwriting.serializers import RequestOutputSerializer
from underwriting.services import notify
from underwriting.services.consent_artifacts import CONTENT_TYPES as CONSENT_ARTIFACT_TYPES
from underwriting.services.consent_artifacts import consent_artifact_upload
from underwriting.services.requests import (
    Applicant,
    ConsentEvidence,
    SubmitItem,
    SubmitOutcome,
    request_submit,
    requests_submit_many,
    submit_item,
)

MAX_WAIT_SECONDS = 10
# A waiter turned away (too many waiting already) is told to ask again after this many seconds.
WAIT_SKIPPED_RETRY_AFTER_SECONDS = 2
IDEMPOTENCY_KEY_MAX_LENGTH = 200
IDEMPOTENCY_KEY_RULE = (
    f"1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters, none of them a control character; a longer key is refused, "
    "never cut."
)


_S = TypeVar("_S", bound=serializers.Serializer[Any])
_templates: dict[type[serializers.Serializer[Any]], serializers.Serializer[Any]] = {}
_templates_lock = threading.Lock()


def serializer_for(cls: type[_S], *args: Any, **kwargs: Any) -> _S:
    """``cls(*args, **kwargs)`` with the bound fields of one instance kept per process, instead of a deep
    copy of every declared field (nested serializers included) per call: the API's single request and
    answer shapes cost more to build than to run. Only for serializers whose fields do not depend on the
    call (no ``get_fields`` reading the request, no context): their fields hold no state between calls, and
    messages are translated when the answer is rendered."""
    template = _templates.get(cls)
    if template is None:
        with _templates_lock:
            template = _templates.get(cls)
            if template is None:
                template = cls()
                template.fields  # noqa: B018  # bound once, under the lock
                _templates[cls] = template
    instance = cls(*args, **kwargs)
    instance.__dict__["fields"] = template.fields  # Serializer.fields is a cached property
    return instance


class ApplicantInputSerializer(serializers.Serializer[Any]):
    resident_id = serializers.CharField(min_length=18, max_length=18, help_text="18-character resident ID")
    name = serializers.CharField(max_length=100)

    def validate_resident_id(self, value: str) -> str:
        from datadomain.services import resident_id_is_valid, resident_id_normalise

        if not resident_id_is_valid(value):
            # Never echo the value: it is personal data.
            raise serializers.ValidationError("Not a valid resident ID (length, birth date or check character).")
        return resident_id_normalise(value)


class ConsentInputSerializer(serializers.Serializer[Any]):
    reference = serializers.CharField(max_length=100)
    signed_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    scope = serializers.ListField(child=serializers.CharField(max_length=50), allow_empty=False, max_length=20)
    artifact_sha256 = serializers.RegexField(r"^[0-9a-f]{64}$", help_text="SHA-256 (hex) of the signed consent form")


class RequestInputSerializer(serializers.Serializer[Any]):
    reference = serializers.CharField(max_length=100, help_text="your own reference, e.g. a policy application number")
    applicant = ApplicantInputSerializer()
    manual = serializers.SlugField(max_length=63, help_text="rating manual slug, e.g. charlson-acci")
    consent = ConsentInputSerializer()


def idempotency_key_problem(value: str) -> str:
    """Why ``value`` cannot be an idempotency key, or "" when it can. Keys are compared whole: cutting a
    long one would make two keys that differ only past the limit replay each other's request."""
    if len(value) > IDEMPOTENCY_KEY_MAX_LENGTH:
        return gettext("At most %(limit)s characters.") % {"limit": IDEMPOTENCY_KEY_MAX_LENGTH}
    # Cc (C0/C1 controls: CR, LF, NUL...), Cf (invisible format characters), Cs (lone surrogates),
    # line and paragraph separators: they would hide in logs and make look-alike keys.
    if any(unicodedata.category(char) in {"Cc", "Cf", "Cs", "Zl", "Zp"} for char in value):
        return gettext("No control or invisible characters.")
    return ""


def validate_idempotency_key(value: str) -> None:
    if problem := idempotency_key_problem(value):
        raise serializers.ValidationError(problem)


def idempotency_key_header(request: Request) -> str:
    """The ``Idempotency-Key`` header, or "" when absent; refused (400) when it is not a usable key.

    WSGI hands headers over as ISO-8859-1, so a UTF-8 key is decoded again to compare equal to the same key
    sent in a batch item's JSON."""
    raw = request.headers.get("Idempotency-Key", "")
    try:
        value = raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise ValidationError({"Idempotency-Key": ["Not UTF-8 text."]}) from None
    if problem := idempotency_key_problem(value):
        raise ValidationError({"Idempotency-Key": [problem]})
    return value


def item_from_body(data: dict[str, Any], body: Any, idempotency_key: str) -> SubmitItem:
    """One validated request body as the submission service takes it. The fingerprint covers the body as
    sent, without a batch item's own ``idempotency_key``, so a batch item and a single POST of the same
    body under the same key are replays of each other."""
    sent = {name: value for name, value in dict(body).items() if name != "idempotency_key"}
    return submit_item(
        reference=data["reference"],
        applicant=Applicant(**data["applicant"]),
        manual_slug=data["manual"],
        consent=ConsentEvidence(
            reference=data["consent"]["reference"],
            signed_at=data["consent"]["signed_at"],
            expires_at=data["consent"].get("expires_at"),
            scope=list(data["consent"]["scope"]),
            artifact_sha256=data["consent"]["artifact_sha256"],
        ),
        idempotency_key=idempotency_key,
        sent=sent,
    )


class BatchItemInputSerializer(RequestInputSerializer):
    idempotency_key = serializers.CharField(
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        required=False,
        allow_blank=True,
        default="",
        validators=[validate_idempotency_key],
        help_text=f"Retry-safe key of this item, like the single POST's Idempotency-Key header: {IDEMPOTENCY_KEY_RULE}",
    )


class BatchItemsField(serializers.ListField):
    """The batch's items, documented as request bodies but checked one by one by the view: an item with
    invalid fields gets its own errors in the results and does not stop the others."""

    def run_child_validation(self, data: list[Any]) -> list[Any]:
        return list(data)


def batch_size_messages(limit: int) -> dict[str, Any]:
    """Why a batch is refused as a whole, each message with the limits (DRF's say "this list", "elements")."""
    # In the request's language: the serializer's fields are built per request (get_fields).
    values = {"limit": limit}
    missing = gettext('Send the batch\'s items as a list under "requests": 1 to %(limit)s requests.') % values
    empty = gettext("The batch is empty: send 1 to %(limit)s requests.") % values
    return {
        "required": missing,
        "null": missing,
        # DRF fills in {input_type} itself.
        "not_a_list": gettext('"requests" must be a list of 1 to %(limit)s requests, not a {input_type}.') % values,
        "empty": empty,
        "min_length": empty,
        "max_length": gettext(
            "A batch holds at most %(limit)s requests (API_BATCH_MAX_ITEMS): split yours into batches of "
            "%(limit)s or fewer."
        )
        % values,
    }


class BatchInputSerializer(serializers.Serializer[Any]):
    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # Built per instance so that the limit is the setting's current value.
        limit = int(settings.API_BATCH_MAX_ITEMS)
        return {
            "requests": BatchItemsField(
                child=BatchItemInputSerializer(),
                allow_empty=False,
                min_length=1,
                max_length=limit,
                help_text=f"1 to API_BATCH_MAX_ITEMS ({limit}) underwriting requests.",
                error_messages=batch_size_messages(limit),
            )
        }


class ItemErrorSerializer(serializers.Serializer[Any]):
    code = serializers.CharField(help_text="invalid_input, idempotency_conflict")
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))  # type: ignore[assignment]


class BatchResultSerializer(serializers.Serializer[Any]):
    index = serializers.IntegerField(help_text="position of the item in the batch, from 0")
    request = RequestOutputSerializer(required=False, help_text="the request, when the item was accepted")
    error = ItemErrorSerializer(required=False, help_text="why the item was refused; the others are unaffected")


class BatchOutputSerializer(serializers.Serializer[Any]):
    results = BatchResultSerializer(many=True, help_text="one per item, in input order")


def example_page_link(position: str, *, reverse: bool = False) -> str:
    """A page link as the list gives them out (DRF's cursor encoding), for the schema's examples."""
    tokens = {"r": "1", "p": position} if reverse else {"p": position}
    cursor = base64.b64encode(urlencode(tokens).encode()).decode()
    return f"https://underwriting.example.org/api/v1/underwriting-requests?{urlencode({'cursor': cursor})}"


EXAMPLE_NEXT_LINK = example_page_link("2026-11-23T02:00:00.120000+00:00")
EXAMPLE_PREVIOUS_LINK = example_page_link("2026-11-23T02:05:00.310000+00:00", reverse=True)
INVALID_CURSOR = "Not a cursor this API gave out: use the next or previous link of a page, or start without one."


class RequestPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    cursor_query_description = (
        "Where the page starts: leave it out for the newest requests, then follow the `next` (older) or "
        "`previous` (newer) link of the page you have, which carries it."
    )
    page_size_query_description = f"Requests per page, 1 to {max_page_size} (default {page_size})."

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": ["string", "null"], "format": "uri"}
        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {
                "next": {**link, "description": "The next (older) page; null on the last page.",
                         "example": EXAMPLE_NEXT_LINK},
                "previous": {**link, "description": "The previous (newer) page; null on the first page.",
                             "example": EXAMPLE_PREVIOUS_LINK},
                "results": schema,
            },
        }  # fmt: skip

    def decode_cursor(self, request: Request) -> Cursor | None:
        """DRF answers an undecodable cursor with 404 and hands a decodable one's position to the database
        as it is, where one that is not a date-time was a 500: both are a 400 on ``cursor`` here."""
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise ValidationError({"cursor": [INVALID_CURSOR]}) from None
        if cursor is None or cursor.position is None:
            return cursor
        # The position is the ordering field's text (DRF's stubs say int).
        position = _utc_datetime(str(cursor.position))
        if position is None:
            raise ValidationError({"cursor": [INVALID_CURSOR]})
        return cursor._replace(position=position.isoformat())  # type: ignore[arg-type]


# The example's resident ID has a wrong check character (the right one is X), so it is refused as invalid
# and can belong to nobody: readers copy examples.
EXAMPLE_RESIDENT_ID = "110105194912310021"
EXAMPLE_BODY = {
    "reference": "APP-2026-000123",
    "applicant": {"resident_id": EXAMPLE_RESIDENT_ID, "name": "张三"},
    "manual": "charlson-acci",
    "consent": {
        "reference": "CONSENT-88321",
        "signed_at": "2026-11-20T10:00:00+08:00",
        "expires_at": "2027-11-20T10:00:00+08:00",
        "scope": ["underwriting"],
        "artifact_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    },
}
EXAMPLE_RESPONSE = {
    "id": "0b8f5b8e-3a8d-4b35-9d44-6f2f7f1c2a10",
    "reference": "APP-2026-000123",
    "status": "completed",
    "reason": None,
    "applicant": {"resident_id_masked": "110105********0021"},
    "manual": {"slug": "charlson-acci", "version": 1},
    "result": {"tier": "B", "label": "Standard", "decision": "accept", "table_rating": None},
    "created_at": "2026-11-23T10:00:00.120000+08:00",
    "completed_at": "2026-11-23T10:00:00.180000+08:00",
}


class InsurerAPIView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [ApiKeyRateThrottle]

    def principal(self) -> InsurerPrincipal:
        user = self.request.user
        assert isinstance(user, InsurerPrincipal)
        return user


@extend_schema_view(
    post=extend_schema(
        operation_id="underwriting_requests_create",
        summary="Submit an underwriting request",
        request=RequestInputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description=(
                    "Retry-safe key: the same key and body return the same request; another body is 409. "
                    + IDEMPOTENCY_KEY_RULE
                ),
            )
        ],
        responses={
            202: RequestOutputSerializer,
            400: OpenApiResponse(description="Invalid fields (an unusable Idempotency-Key included)"),
            409: OpenApiResponse(description="Idempotency-Key reused with another body"),
            413: OpenApiResponse(description="Body larger than the API accepts"),
        },
        examples=[
            OpenApiExample("Request", value=EXAMPLE_BODY, request_only=True),
            OpenApiExample("Accepted", value=EXAMPLE_RESPONSE, response_only=True, status_codes=[202]),
        ],
    ),
    get=extend_schema(
        operation_id="underwriting_requests_list",
        summary="List your underwriting requests (newest first)",
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                enum=[s.value for s in RequestStatus],
                description="Only requests in this status (e.g. `completed`, `rejected`); another value is a 400.",
            ),
            OpenApiParameter(
                "reference",
                OpenApiTypes.STR,
                description="Only requests with exactly this `reference` (your own, as you submitted it).",
            ),
            OpenApiParameter(
                "created_after",
                OpenApiTypes.DATETIME,
                description=(
                    "Only requests created at or after this ISO 8601 date-time, with its time zone "
                    "(e.g. `2026-11-01T00:00:00+08:00`); one without a time zone is a 400."
                ),
            ),
            OpenApiParameter(
                "created_before",
                OpenApiTypes.DATETIME,
                description="Only requests created before this ISO 8601 date-time, with its time zone.",
            ),
        ],
        responses={
            200: RequestOutputSerializer(many=True),
            400: OpenApiResponse(description="Invalid filter or a cursor this API did not give out"),
        },
    ),
)
class UnderwritingRequestListApi(InsurerAPIView):
    pagination_class = RequestPagination

    def post(self, request: Request) -> Response:
        idempotency_key = idempotency_key_header(request)
        serializer = serializer_for(RequestInputSerializer, data=request.data)
        serializer.is_valid(raise_exception=True)
        item = item_from_body(serializer.validated_data, request.data, idempotency_key)
        principal = self.principal()
        created = request_submit(
            insurer_id=principal.insurer.pk,
            insurer_slug=principal.insurer.slug,
            item=item,
            api_key_id=principal.api_key.pk,
        )[0]
        return Response(serializer_for(RequestOutputSerializer, created).data, status=status.HTTP_202_ACCEPTED)

    def get(self, request: Request) -> Response:
        params = request.query_params
        status_filter = params.get("status")
        if status_filter and status_filter not in RequestStatus.values:
            choices = ", ".join(RequestStatus.values)
            raise ValidationError({"status": [gettext("Use one of: %(choices)s.") % {"choices": choices}]})
        queryset = uw_selectors.requests_for_insurer(
            insurer_id=self.principal().insurer.pk,
            status=status_filter,
            reference=params.get("reference"),
            created_after=_datetime_param(params, "created_after"),
            created_before=_datetime_param(params, "created_before"),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(RequestOutputSerializer(page, many=True).data)  # type: ignore[arg-type]


def _datetime_param(params: Any, name: str) -> datetime | None:
    value = params.get(name)
    if not value:
        return None
    parsed = _utc_datetime(value)
    if parsed is None:
        raise ValidationError({name: ["Use an ISO 8601 date-time with a time zone, e.g. 2026-11-01T00:00:00+08:00."]})
    return parsed


def _utc_datetime(value: str) -> datetime | None:
    """An ISO 8601 date-time with a time zone, in UTC; None when ``value`` is not one."""
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        return None
    try:
        # UTC before it reaches the database: PostgreSQL refuses offsets Python accepts (e.g. -18:38).
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


EXAMPLE_BATCH_BODY = {
    "requests": [
        {**EXAMPLE_BODY, "idempotency_key": "app-2026-000123"},
        {**EXAMPLE_BODY, "reference": "APP-2026-000124", "manual": "Not A Slug"},
    ]
}
EXAMPLE_BATCH_RESPONSE = {
    "results": [
        {"index": 0, "request": {**EXAMPLE_RESPONSE, "status": "extracting", "result": None, "completed_at": None}},
        {
            "index": 1,
            "error": {
                "code": "invalid_input",
                "message": "The request has invalid fields.",
                "fields": {
                    "manual": ["Enter a valid \u201cslug\u201d consisting of letters, numbers, underscores or hyphens."]
                },
            },
        },
    ]
}


@extend_schema_view(
    post=extend_schema(
        operation_id="underwriting_requests_batch_create",
        summary="Submit a batch of underwriting requests",
        description=(
            "Each item is a request body as for the single POST, with an optional `idempotency_key`. Items are "
            "checked and submitted independently: the results list, in input order, holds each item's request "
            "or its error. A body that is not a list of items, is empty or is too long is refused as a whole."
        ),
        request=BatchInputSerializer,
        responses={
            202: BatchOutputSerializer,
            400: OpenApiResponse(
                description=(
                    "The batch as a whole was refused, nothing was submitted: `requests` is missing, is not a list, "
                    f"is empty or holds more than API_BATCH_MAX_ITEMS ({settings.API_BATCH_MAX_ITEMS}) items "
                    "(`fields.requests` says which). An item's own invalid fields are not a 400: they are that "
                    "item's error in the 202 results."
                ),
                examples=[
                    OpenApiExample(
                        "Too many items",
                        value=error_body(
                            "invalid_input",
                            "The request has invalid fields.",
                            {"requests": [batch_size_messages(settings.API_BATCH_MAX_ITEMS)["max_length"]]},
                        ),
                    )
                ],
            ),
        },
        examples=[
            OpenApiExample("Batch", value=EXAMPLE_BATCH_BODY, request_only=True),
            OpenApiExample("Results", value=EXAMPLE_BATCH_RESPONSE, response_only=True, status_codes=[202]),
        ],
    )
)
class UnderwritingRequestBatchApi(InsurerAPIView):
    throttle_classes = [ApiKeyRateThrottle, ApiKeyBatchItemThrottle]

    def post(self, request: Request) -> Response:
        serializer = BatchInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        parsed = [_batch_item(body) for body in serializer.validated_data["requests"]]
        principal = self.principal()
        submitted = iter(
            requests_submit_many(
                insurer_id=principal.insurer.pk,
                insurer_slug=principal.insurer.slug,
                items=[item for item in parsed if isinstance(item, SubmitItem)],
                api_key_id=principal.api_key.pk,
            )
        )
        outcomes = [next(submitted) if isinstance(item, SubmitItem) else item for item in parsed]
        results = [_batch_result(index, outcome) for index, outcome in enumerate(outcomes)]
        return Response({"results": results}, status=status.HTTP_202_ACCEPTED)


def _batch_item(body: Any) -> SubmitItem | SubmitOutcome:
    """The item to submit or, when its fields are invalid, its outcome already."""
    serializer = serializer_for(BatchItemInputSerializer, data=body)
    if serializer.is_valid():
        return item_from_body(serializer.validated_data, body, serializer.validated_data["idempotency_key"])
    fields = flatten(serializer.errors)
    return SubmitOutcome(error=UnderwritingError("invalid_input", "The request has invalid fields.", fields=fields))


def _batch_result(index: int, outcome: SubmitOutcome) -> dict[str, Any]:
    if outcome.error is not None:
        return {"index": index, "error": outcome.error.as_dict()}
    return {"index": index, "request": serializer_for(RequestOutputSerializer, outcome.request).data}


@extend_schema_view(
    get=extend_schema(
        operation_id="underwriting_requests_retrieve",
        summary="Read one underwriting request",
        parameters=[
            OpenApiParameter(
                "request_id",
                OpenApiTypes.UUID,
                OpenApiParameter.PATH,
                description="The request's `id`, as the submission answered it.",
            ),
            OpenApiParameter(
                "wait",
                OpenApiTypes.NUMBER,
                description=(
                    f"Seconds (at most {MAX_WAIT_SECONDS}) to wait for a terminal status before answering. When "
                    "too many calls are waiting already (for your API key, or on the server), the call does not "
                    "wait: it answers at once with the current status, the header `X-Wait: skipped` and a "
                    "`Retry-After` in seconds; read the request again after that."
                ),
            ),
            OpenApiParameter(
                "X-Wait",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[200],
                enum=["skipped"],
                description="Present when `wait` was asked for but not honoured (too many waiting calls).",
            ),
            OpenApiParameter(
                "Retry-After",
                OpenApiTypes.INT,
                OpenApiParameter.HEADER,
                response=[200],
                description="With `X-Wait: skipped`: seconds to let pass before reading the request again.",
            ),
        ],
        responses={200: RequestOutputSerializer, 404: OpenApiResponse(description="No such request for you")},
        examples=[OpenApiExample("Completed", value=EXAMPLE_RESPONSE, response_only=True)],
    )
)
class UnderwritingRequestDetailApi(InsurerAPIView):
    def get(self, request: Request, request_id: str) -> Response:
        wait = _wait_seconds(request.query_params.get("wait"))
        principal = self.principal()
        insurer_id = principal.insurer.pk
        if not wait:
            return Response(serializer_for(RequestOutputSerializer, self.load(insurer_id, request_id)).data)
        try:
            key = uuid.UUID(request_id)
        except ValueError:
            raise NotFound("No such underwriting request.") from None
        found: UnderwritingRequest | None = None

        def terminal_now() -> bool:
            nonlocal found
            found = self.load(insurer_id, key)
            return found.is_terminal

        # A waiter holds one of the process's few threads: beyond the bounds, answer now instead of queueing.
        with notify.waiter_slot(str(principal.api_key.pk), wait) as admitted:
            if admitted:
                # Woken by the terminal transition itself (Redis pub/sub), not by polling the database. Its
                # first read comes after it has subscribed, so it is also the one that answers a request
                # already terminal: two reads for a request that completes while its caller waits.
                notify.wait_terminal(key, terminal_now, wait)
        if found is None:  # not admitted: a finished request is answered as such, the others told to come back
            found = self.load(insurer_id, key)
        response = Response(serializer_for(RequestOutputSerializer, found).data)
        if not admitted and not found.is_terminal:
            response["X-Wait"] = "skipped"
            response["Retry-After"] = str(WAIT_SKIPPED_RETRY_AFTER_SECONDS)
        return response

    def load(self, insurer_id: int, request_id: str | uuid.UUID) -> UnderwritingRequest:
        found = uw_selectors.request_for_api(insurer_id=insurer_id, request_id=request_id)
        if found is None:
            raise NotFound("No such underwriting request.")
        return found


def _wait_seconds(value: str | None) -> float:
    if value in (None, ""):
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan  # refused below like any other value outside the range
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        message = gettext("A number of seconds from 0 to %(limit)s.") % {"limit": MAX_WAIT_SECONDS}
        raise ValidationError({"wait": [message]})
    return seconds


class ConsentArtifactThrottle(ApiKeyRateThrottle):
    """Uploads per API key (API_CONSENT_ARTIFACT_THROTTLE_RATE) and per insurer
    (API_INSURER_CONSENT_ARTIFACT_THROTTLE_RATE): every upload is kept, so they bound how fast one key or
    one insurer can grow the consent store."""

    scope = "api_consent_artifacts"
    key_rate_setting = "API_CONSENT_ARTIFACT_THROTTLE_RATE"
    insurer_rate_setting = "API_INSURER_CONSENT_ARTIFACT_THROTTLE_RATE"


def file_too_large(limit: int) -> str:
    return gettext("The file is larger than %(limit)s bytes.") % {"limit": limit}


class ConsentArtifactJsonSerializer(serializers.Serializer[Any]):
    content_base64 = serializers.CharField(
        help_text="The signed form, base64-encoded (standard alphabet, with padding).", trim_whitespace=True
    )
    content_type = serializers.ChoiceField(
        choices=list(CONSENT_ARTIFACT_TYPES), required=False, help_text="Optional; checked against the content."
    )

    def validate_content_base64(self, value: str) -> bytes:
        limit = int(settings.CONSENT_ARTIFACT_MAX_BYTES)
        if len(value) > (limit + 2) // 3 * 4 + 4:
            raise serializers.ValidationError(file_too_large(limit))
        try:
            return base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            raise serializers.ValidationError("This is not valid base64.") from None


class ConsentArtifactMultipartSerializer(serializers.Serializer[Any]):
    file = serializers.FileField(help_text="The signed form: a PDF, JPEG or PNG file.")


class ConsentArtifactOutputSerializer(serializers.Serializer[Any]):
    sha256 = serializers.CharField(help_text="Give this as consent.artifact_sha256 in your requests.")
    size = serializers.IntegerField()
    content_type = serializers.ChoiceField(choices=list(CONSENT_ARTIFACT_TYPES))


@extend_schema_view(
    post=extend_schema(
        operation_id="consent_artifacts_create",
        summary="Upload a signed consent form",
        description=(
            "For insurers whose consent is proved by the signed form (consent mode `form`): send the form "
            "itself, as `multipart/form-data` (one part named `file`) or as JSON with the content in base64. "
            "The bureau keeps it in its consent store and answers its SHA-256, which your requests give as "
            "`consent.artifact_sha256`. PDF, JPEG or PNG, judged from the content; at most "
            "`CONSENT_ARTIFACT_MAX_BYTES` (2 MiB by default). Sending the same form again answers the same."
        ),
        request={
            "multipart/form-data": ConsentArtifactMultipartSerializer,
            "application/json": ConsentArtifactJsonSerializer,
        },
        responses={
            201: ConsentArtifactOutputSerializer,
            400: OpenApiResponse(description="No file, an empty or oversized file, or not a PDF, JPEG or PNG"),
            413: OpenApiResponse(description="Body larger than the API accepts"),
            415: OpenApiResponse(description="Neither multipart/form-data nor JSON"),
        },
        examples=[
            OpenApiExample(
                "Stored",
                value={
                    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                    "size": 48213,
                    "content_type": "application/pdf",
                },
                response_only=True,
            )
        ],
    )
)
class ConsentArtifactApi(InsurerAPIView):
    parser_classes = [MultiPartParser, JSONParser]
    throttle_classes = [ApiKeyRateThrottle, ConsentArtifactThrottle]

    def post(self, request: Request) -> Response:
        if request.content_type.startswith("multipart/"):
            if len(request.FILES.getlist("file")) > 1 or len(request.FILES) > 1:
                raise ValidationError({"file": ["Send one file, in the part named file."]})
            serializer: serializers.Serializer[Any] = ConsentArtifactMultipartSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            upload = serializer.validated_data["file"]
            if upload.size > int(settings.CONSENT_ARTIFACT_MAX_BYTES):
                raise ValidationError({"file": [file_too_large(int(settings.CONSENT_ARTIFACT_MAX_BYTES))]})
            content, declared = upload.read(), str(upload.content_type or "")
        else:
            serializer = ConsentArtifactJsonSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            content = serializer.validated_data["content_base64"]
            declared = str(serializer.validated_data.get("content_type", ""))
        stored = consent_artifact_upload(
            insurer_id=self.principal().insurer.pk, content=content, declared_type=declared
        )
        body = {"sha256": stored.sha256, "size": stored.size, "content_type": stored.content_type}
        return Response(ConsentArtifactOutputSerializer(body).data, status=status.HTTP_201_CREATED)
