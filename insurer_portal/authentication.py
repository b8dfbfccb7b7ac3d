from __future__ import annotations

import math
import time
from dataclasses import dataclass

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from insurer_portal.counters import Increment, counter_subtract, counters_add_within
from insurer_portal.services import api_key_authenticate
from tenants.models import ApiKey, Insurer

# Set on a request by the throttles: the counters it was added to, and that one of them refused it.
_COUNTED = "_throttle_counted"
_REFUSED = "_throttle_refused"


@dataclass(frozen=True)
class InsurerPrincipal:
    """The caller of the API: an insurer acting through one of its keys."""

    insurer: Insurer
    api_key: ApiKey
    is_authenticated: bool = True
    is_active: bool = True


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[InsurerPrincipal, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme != self.keyword or not token.strip():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <API key>'.")
        key = api_key_authenticate(plaintext=token.strip())
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return InsurerPrincipal(insurer=key.insurer, api_key=key), key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "insurer_portal.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "uwk_<prefix>_<secret>"}


def _rate(setting: str) -> tuple[int, int]:
    """A rate setting in DRF's syntax ("600/min") as (limit, seconds)."""
    count, _, period = str(getattr(settings, setting)).partition("/")
    return int(count), {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[:1]]


@dataclass(frozen=True)
class _Window:
    """One fixed-window counter: at most ``limit`` units per ``seconds`` for one key or one insurer."""

    key: str
    limit: int
    seconds: int


class ApiKeyRateThrottle(BaseThrottle):
    """Calls per API key (API_THROTTLE_RATE) and per insurer over all its keys (API_INSURER_THROTTLE_RATE);
    past either, 429 with Retry-After (the seconds until the window that refused the call ends).

    Fixed windows counted atomically in the shared cache (insurer_portal.counters, one Redis round trip
    for both): a call adds its weight to its key's counter, then to its insurer's, for the current window,
    and goes through only if neither went past its limit. The add returns the new total in the same step,
    so however many calls arrive at once no more than the limit are let through (with one counter, exactly
    min(calls, limit)). A refused call takes its share back from every counter it was added to, so a
    refused batch does not use up the budget of smaller ones; a call one throttle refused is not counted
    by the next. At a window's edge a client can fit up to twice the rate into a short span: the price of
    counters that cannot race.
    """

    scope = "api_key"
    key_rate_setting = "API_THROTTLE_RATE"
    insurer_rate_setting = "API_INSURER_THROTTLE_RATE"

    def __init__(self) -> None:
        self.retry_after: int | None = None

    def weight(self, request: Request) -> int:
        return 1

    def windows(self, key: ApiKey) -> list[_Window]:
        return [
            _Window(f"throttle:{self.scope}:key:{key.prefix}", *_rate(self.key_rate_setting)),
            _Window(f"throttle:{self.scope}:insurer:{key.insurer_id}", *_rate(self.insurer_rate_setting)),
        ]

    def allow_request(self, request: Request, view: object) -> bool:
        if getattr(request, _REFUSED, False) or not isinstance(request.auth, ApiKey):
            return True
        weight = self.weight(request)
        counted: list[tuple[str, int]] = getattr(request, _COUNTED, [])
        now = time.time()
        windows = self.windows(request.auth)
        numbers = [int(now // window.seconds) for window in windows]
        # Two windows long: a counter never expires while its window can still be counted in.
        increments = [
            Increment(f"{window.key}:{number}", weight, timeout=2 * window.seconds, limit=window.limit)
            for window, number in zip(windows, numbers, strict=True)
        ]
        refused = counters_add_within(increments)  # takes back its own shares when one window refuses
        if refused is not None:
            for earlier_key, earlier_weight in counted:  # the shares of the throttles before this one
                counter_subtract(earlier_key, earlier_weight)
            setattr(request, _REFUSED, True)
            window = windows[refused]
            self.retry_after = max(1, math.ceil((numbers[refused] + 1) * window.seconds - now))
            return False
        counted.extend((increment.key, increment.delta) for increment in increments)
        setattr(request, _COUNTED, counted)
        return True

    def wait(self) -> float | None:
        return self.retry_after


class ApiKeyBatchItemThrottle(ApiKeyRateThrottle):
    """Requests submitted in batches, per API key (API_BATCH_THROTTLE_RATE) and per insurer
    (API_INSURER_BATCH_THROTTLE_RATE): a batch POST counts one per item, so a key cannot put
    API_THROTTLE_RATE x API_BATCH_MAX_ITEMS requests a minute through the batch endpoint (429 with
    Retry-After past the rate, as for single calls)."""

    scope = "api_key_batch_items"
    key_rate_setting = "API_BATCH_THROTTLE_RATE"
    insurer_rate_setting = "API_INSURER_BATCH_THROTTLE_RATE"

    def weight(self, request: Request) -> int:
        items = request.data.get("requests") if isinstance(request.data, dict) else None
        return len(items) if isinstance(items, list) and items else 1
