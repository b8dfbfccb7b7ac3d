"""Property-based API testing from the published OpenAPI schema (schemathesis): whatever a client sends,
the API never answers 5xx, and every response matches the schema it documents."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from config.wsgi import application
from insurer_portal.services import api_key_create
from tests.factories import InsurerFactory

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@pytest.fixture
def api(live_server: Any, settings: Any) -> tuple[str, str]:
    """A live server on loopback (real HTTP, the app's own request cycle) and an API key for it."""
    settings.API_THROTTLE_RATE = settings.API_INSURER_THROTTLE_RATE = "100000/min"
    _, key = api_key_create(insurer=InsurerFactory(slug="fuzz-life"))
    return str(live_server.url), key


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx_and_matches_its_schema(case: schemathesis.Case, api: tuple[str, str]) -> None:
    base_url, key = api
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {key}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
