"""The API documentation: what the published schema promises (webhooks, error responses, parameter help),
that the errors the API really answers look like what it promises, and that the docs pages name no host
but this one (the browser's view of the same is in test_browser_items.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client
from rest_framework.test import APIClient

from insurer_portal.api_docs import EVENT_TYPES, EXAMPLE_SECRET, retry_delays
from tenants.models import Insurer
from tests.underwriting.conftest import client_for, request_body
from underwriting.services.webhooks import SIGNATURE_HEADER, verify_signature

pytestmark = pytest.mark.django_db
URL = "/api/v1/underwriting-requests"
ERROR_REF = "#/components/schemas/Error"
STANDARD_ERRORS = {"400", "401", "403", "429"}


@pytest.fixture
def schema(client: Client) -> dict[str, Any]:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return dict(json.loads(response.content))


def operations(schema: dict[str, Any], section: str = "paths") -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema[section].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield path, method, operation


def parameters(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every parameter the schema declares: on path items and operations, of the API and of the webhooks,
    and the response headers."""
    for section in ("paths", "webhooks"):
        for path, item in schema[section].items():
            for parameter in item.get("parameters", []):
                yield path, parameter
            for method, operation in item.items():
                if not isinstance(operation, dict):
                    continue
                for parameter in operation.get("parameters", []):
                    yield f"{method} {path}", parameter
                for code, response in operation.get("responses", {}).items():
                    for name, header in response.get("headers", {}).items():
                        yield f"{method} {path} {code}", {"name": name, **header}


def test_every_parameter_and_header_has_a_description(schema: dict[str, Any]) -> None:
    found = list(parameters(schema))
    names = {parameter["name"] for _, parameter in found}
    assert {"status", "reference", "created_after", "created_before", "cursor", "page_size", "wait"} <= names
    assert {"request_id", "Idempotency-Key", "Retry-After", "WWW-Authenticate", SIGNATURE_HEADER} <= names
    undescribed = [(where, p["name"]) for where, p in found if len(str(p.get("description", "")).strip()) < 15]
    assert undescribed == []


def test_every_operation_documents_400_401_403_and_429_with_the_error_body(schema: dict[str, Any]) -> None:
    seen = 0
    for path, method, operation in operations(schema):
        responses = operation["responses"]
        assert set(responses) >= STANDARD_ERRORS, (method, path, sorted(responses))
        for code, response in responses.items():
            if code.startswith(("4", "5")):
                content = response["content"]["application/json"]
                assert content["schema"] == {"$ref": ERROR_REF}, (method, path, code)
                assert content.get("examples"), (method, path, code)
                assert len(response["description"]) > 20, (method, path, code)
        assert "Retry-After" in responses["429"]["headers"]
        assert "WWW-Authenticate" in responses["401"]["headers"]
        seen += 1
    assert seen == 5
    error = schema["components"]["schemas"]["ErrorDetail"]
    assert set(error["properties"]) == {"code", "message", "fields"}


def test_the_webhooks_are_in_the_schema_with_payload_signature_and_responses(schema: dict[str, Any]) -> None:
    assert schema["openapi"].startswith("3.1")
    assert list(schema["webhooks"]) == EVENT_TYPES
    assert set(EVENT_TYPES) >= {"request.completed", "request.rejected", "request.unrated", "request.failed"}
    for name, _, operation in operations(schema, "webhooks"):
        body = operation["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": "#/components/schemas/WebhookEvent"}
        [example] = body["examples"].values()
        assert example["value"]["type"] == name
        [signature] = operation["parameters"]
        assert (signature["name"], signature["in"], signature["required"]) == (SIGNATURE_HEADER, "header", True)
        assert set(operation["responses"]) == {"2XX", "default"}
    event = schema["components"]["schemas"]["WebhookEvent"]["properties"]
    assert set(event) == {"id", "type", "created_at", "data"}
    assert event["data"]["allOf"] == [{"$ref": "#/components/schemas/RequestOutput"}]


def test_the_guide_explains_signature_retries_and_events(schema: dict[str, Any], settings: Any) -> None:
    guide = schema["info"]["description"]
    for heading in ("## Webhooks", "### Verifying the signature", "### Retries and backoff"):
        assert heading in guide
    for event in EVENT_TYPES:
        assert f"`{event}`" in guide
    assert f"up to {settings.WEBHOOK_MAX_ATTEMPTS} attempts" in guide
    assert ", ".join(f"{delay} s" for delay in retry_delays()) in guide
    assert retry_delays()[:3] == [10, 20, 40]  # WEBHOOK_RETRY_BASE_SECONDS doubling, as webhook_deliver waits
    assert "429" in guide
    assert "Retry-After" in guide


def test_the_worked_signature_example_verifies(schema: dict[str, Any]) -> None:
    """The guide's numbers are checked here with a hand-written HMAC, not with the code that made them."""
    guide = schema["info"]["description"]
    body = re.search(r"^\s+body:\s+(\{.*\})$", guide, re.MULTILINE)
    header = re.search(r"^\s+header:\s+(t=\d+,v1=[0-9a-f]{64})$", guide, re.MULTILINE)
    digest = re.search(r"^\s+v1:\s+([0-9a-f]{64})$", guide, re.MULTILINE)
    assert body
    assert header
    assert digest
    timestamp = int(header.group(1).split(",")[0][2:])
    expected = hmac.new(EXAMPLE_SECRET.encode(), f"{timestamp}.{body.group(1)}".encode(), hashlib.sha256).hexdigest()
    assert digest.group(1) == expected
    assert header.group(1) == f"t={timestamp},v1={expected}"
    assert verify_signature(EXAMPLE_SECRET, header.group(1), body.group(1).encode(), now=timestamp)
    assert f"-hmac '{EXAMPLE_SECRET}'" in guide
    assert json.loads(body.group(1))["type"] == "request.completed"


def test_the_schema_has_no_sample_paths_of_other_apis_and_no_placeholder_limits(schema: dict[str, Any]) -> None:
    text = json.dumps(schema)
    assert "api.example.org" not in text
    assert "/accounts/" not in text
    assert "1 to N" not in text
    listing = schema["components"]["schemas"]["PaginatedRequestOutputList"]["properties"]
    for link in ("next", "previous"):
        assert urlsplit(listing[link]["example"]).path == URL


# --- the errors the API really answers, against what the schema says ---------------------------------


def assert_error_body(response: Any, code: str) -> dict[str, Any]:
    body = dict(response.json())
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == code
    return body


def test_a_missing_key_is_a_401_with_the_documented_body() -> None:
    response = APIClient().get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert_error_body(response, "not_authenticated")


def test_a_throttled_call_is_a_429_with_retry_after_and_the_documented_body(insurer: Insurer, settings: Any) -> None:
    settings.API_THROTTLE_RATE = "1/min"
    api = client_for(insurer)
    assert api.get(URL).status_code == 200
    response = api.get(URL)
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert_error_body(response, "throttled")


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (None, 'Send the batch\'s items as a list under "requests": 1 to 3 requests.'),
        ({"a": 1}, '"requests" must be a list of 1 to 3 requests, not a dict.'),
        ([], "The batch is empty: send 1 to 3 requests."),
        ("many", "A batch holds at most 3 requests (API_BATCH_MAX_ITEMS): split yours into batches of 3 or fewer."),
    ],
)
def test_a_batch_refused_as_a_whole_says_the_limits(
    insurer: Insurer, alice: dict[str, str], settings: Any, items: Any, message: str
) -> None:
    settings.API_BATCH_MAX_ITEMS = 3
    if items == "many":
        items = [request_body(alice, reference=f"B-{n}") for n in range(4)]
    body = {} if items is None else {"requests": items}
    response = client_for(insurer).post(f"{URL}/batch", body, format="json", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    assert assert_error_body(response, "invalid_input")["error"]["fields"] == {"requests": [message]}
    chinese = client_for(insurer).post(f"{URL}/batch", body, format="json", HTTP_ACCEPT_LANGUAGE="zh-hans")
    [translated] = assert_error_body(chinese, "invalid_input")["error"]["fields"]["requests"]
    assert "3" in translated
    assert re.search(r"[\u4e00-\u9fff]", translated)


# --- the pages name no other host ----------------------------------------------------------------------


class References(HTMLParser):
    """Every URL a page would load or send to: src, href, action, srcset, poster, data and inline url()."""

    ATTRIBUTES = {"src", "href", "action", "srcset", "poster", "data", "formaction", "spec-url"}

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in self.ATTRIBUTES and value:
                self.urls.extend(part.strip().split(" ")[0] for part in value.split(","))
            if name == "style" and value:
                self.urls.extend(re.findall(r"url\(['\"]?([^'\")]+)", value))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_the_docs_pages_reference_no_other_host(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    parser = References()
    parser.feed(html)
    assert parser.urls, "the page loads its script from somewhere"
    foreign = [url for url in parser.urls if urlsplit(url).netloc or urlsplit(url).scheme not in {"", "data"}]
    assert foreign == []
    # Nor in inline scripts and styles (a font @import, a script building a URL).
    assert re.findall(r"(?:https?:)?//[a-z0-9-]+\.[a-z0-9.-]+", "".join(parser.text), re.IGNORECASE) == []
    assert "fonts.googleapis" not in html
    assert "fonts.gstatic" not in html


def test_the_docs_policy_lets_nothing_load_from_elsewhere(client: Client) -> None:
    for path in ("/api/docs/", "/api/redoc/"):
        header = client.get(path)["Content-Security-Policy"]
        policy = dict((*directive.split(" ", 1), "")[:2] for directive in header.split("; "))
        for directive in ("default-src", "font-src", "connect-src", "img-src", "style-src", "script-src"):
            sources = set(policy[directive].split())
            assert sources <= {"'self'", "'unsafe-inline'", "data:"}, (path, directive, sources)
