from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from insurer_portal.models import ApiKey, Insurer
from insurer_portal.services import api_key_authenticate


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


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Requests per API key (429 with Retry-After past the rate)."""

    scope = "api_key"

    def get_rate(self) -> str:
        return str(settings.API_THROTTLE_RATE)

    def get_cache_key(self, request: Request, view: object) -> str | None:
        if isinstance(request.auth, ApiKey):
            return f"throttle:{self.scope}:{request.auth.prefix}"
        return None


class ApiKeyBatchItemThrottle(ApiKeyRateThrottle):
    """Requests submitted in batches, per API key: a batch POST counts one per item, so a key cannot put
    API_THROTTLE_RATE x API_BATCH_MAX_ITEMS requests a minute through the batch endpoint (429 with
    Retry-After past the rate, as for single calls)."""

    scope = "api_key_batch_items"

    def get_rate(self) -> str:
        return str(settings.API_BATCH_THROTTLE_RATE)

    def allow_request(self, request: Request, view: object) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        allowed, duration = self.parse_rate(self.rate)
        if allowed is None or duration is None:
            return True
        items = request.data.get("requests") if isinstance(request.data, dict) else None
        weight = len(items) if isinstance(items, list) and items else 1
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - duration:
            self.history.pop()
        if len(self.history) + weight > allowed:
            return self.throttle_failure()
        self.history[:0] = [self.now] * weight
        self.cache.set(self.key, self.history, duration)
        return True
