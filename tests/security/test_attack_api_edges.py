"""Attacks on the API's edges: malformed cursors and oversized bodies (500s), idempotency keys cut short
(two clients' keys colliding), personal data reaching the logs through URLs, an open /metrics in
production, and an API example whose resident ID could belong to a real person.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator
from datetime import date
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from config.settings.env import csp_directives
from datadomain import identity
from datadomain.services import resident_id_is_valid
from ops.logging import JsonFormatter, RedactPersonalData, RequestIdFilter, decoded, redact_path
from tenants.models import Insurer
from tests import fhir
from tests.deploy.test_production_settings import production_env, run_python
from tests.gunicorn import database_url
from tests.underwriting.conftest import (  # noqa: F401
    ALICE_ID,
    ALICE_NAME,
    approved_manuals,
    author,
    client_for,
    insurer,
    request_body,
    reviewer,
)
from underwriting.models import UnderwritingRequest

pytestmark = pytest.mark.django_db
URL = "/api/v1/underwriting-requests"


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def make_requests(insurer: Insurer, count: int) -> list[UnderwritingRequest]:  # noqa: F811
    return [
        UnderwritingRequest.objects.create(
            insurer=insurer,
            reference=f"EDGE-{index}",
            subject_key="d" * 64,
            resident_id_masked="110101********001X",
            manual_slug="charlson-acci",
            as_of=date(2026, 11, 23),
        )
        for index in range(count)
    ]


def assert_field_error(response: Any, field: str, status: int = 400) -> None:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert field in error["fields"], error


# --- 14: malformed cursors and query parameters answer 400, never 500 ---------------------------------


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",  # not base64: DRF's 404
        "%ff%fe",
        b64("p=garbage"),  # a position that is not a date-time: was a 500 from the database layer
        b64("p=2026-13-45T00:00:00+00:00"),
        b64("p=2026-01-01T00:00:00"),  # no time zone
        b64("p=9999-12-31T23:59:59-23:59"),  # past the largest date once in UTC
        b64("p=" + "9" * 30),
        b64("r=1&p=x"),
        b64("r=abc"),
        b64("o=-1"),
        b64(b"\xff\xfe\x00"),
    ],
)
def test_a_malformed_cursor_is_a_400_on_cursor(insurer: Insurer, cursor: str) -> None:  # noqa: F811
    make_requests(insurer, 2)
    response = client_for(insurer).get(URL, {"cursor": cursor})
    assert_field_error(response, "cursor")


def test_the_cursors_the_api_gives_out_still_page_through(insurer: Insurer) -> None:  # noqa: F811
    made = make_requests(insurer, 5)
    api = client_for(insurer)
    seen: list[str] = []
    page = api.get(URL, {"page_size": 2}).json()
    seen += [row["id"] for row in page["results"]]
    while page["next"]:
        page = api.get(page["next"]).json()
        seen += [row["id"] for row in page["results"]]
    assert sorted(seen) == sorted(str(request.pk) for request in made)
    assert api.get(page["previous"]).status_code == 200


@st.composite
def cursors(draw: st.DrawFn) -> str:
    """Cursors an attacker would build: base64 of a query string with any o, r and p, or any text."""
    tokens = draw(st.dictionaries(st.sampled_from(["o", "r", "p", "x"]), st.text(max_size=40), max_size=3))
    return draw(st.one_of(st.just(b64(urlencode(tokens))), st.text(max_size=60)))


@pytest.fixture
def edge_api(insurer: Insurer) -> tuple[APIClient, UnderwritingRequest]:  # noqa: F811
    return client_for(insurer), make_requests(insurer, 1)[0]


@hypothesis_settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    cursor=cursors(),
    page_size=st.text(max_size=8),
    reference=st.text(max_size=30),
    after=st.text(max_size=40),
    wait=st.text(max_size=10),
)
def test_no_query_parameter_makes_a_500(
    edge_api: tuple[APIClient, UnderwritingRequest],
    cursor: str,
    page_size: str,
    reference: str,
    after: str,
    wait: str,
) -> None:
    api, request = edge_api
    params = {"cursor": cursor, "page_size": page_size, "reference": reference, "created_after": after}
    listing = api.get(URL, {key: value.replace("\x00", "") for key, value in params.items()})
    assert listing.status_code in {200, 400}, listing.content
    detail = api.get(f"{URL}/{request.pk}", {"wait": wait.replace("\x00", "")})
    assert detail.status_code in {200, 400}, detail.content


# --- 14: bodies over the limit answer 413, in the API's envelope or as the portal's page ----------------


@pytest.mark.parametrize("path", [URL, f"{URL}/batch"])
def test_an_api_body_over_the_limit_is_a_413_in_the_error_envelope(
    insurer: Insurer,  # noqa: F811
    path: str,
    settings: Any,
) -> None:
    body = json.dumps({"reference": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
    response = client_for(insurer).post(path, body, content_type="application/json")
    assert response.status_code == 413, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "request_too_large"
    assert error["fields"] == {}


def test_without_the_middleware_the_api_still_answers_413_not_500(
    insurer: Insurer,  # noqa: F811
    settings: Any,
) -> None:
    """Django's own refusal (RequestDataTooBig, raised when DRF reads the body) maps to the same 413."""
    settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if not name.endswith("RequestBodyLimitMiddleware")]
    body = json.dumps({"reference": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
    response = client_for(insurer).post(URL, body, content_type="application/json")
    assert response.status_code == 413, response.content[:300]
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_portal_upload_over_the_limit_gets_a_friendly_413_page(settings: Any) -> None:
    big = SimpleUploadedFile("applicants.csv", b"x" * (settings.REQUEST_BODY_MAX_BYTES + 1), content_type="text/csv")
    response = Client().post("/portal/batches/", {"file": big}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 413
    page = response.content.decode()
    assert "<h1" in page
    assert "Too large to accept" in page
    assert 'href="/portal/"' in page  # a way back
    big.seek(0)
    chinese = Client().post("/portal/login/", {"file": big}, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert chinese.status_code == 413
    assert "内容过大" in chinese.content.decode()


# --- 15: an Idempotency-Key is taken whole or refused ----------------------------------------------


def test_keys_that_differ_after_200_characters_no_longer_collide(
    insurer: Insurer,  # noqa: F811
    approved_manuals: Any,  # noqa: F811
) -> None:
    api = client_for(insurer)
    applicant = {"resident_id": ALICE_ID, "name": ALICE_NAME}
    first, second = "k" * 200 + "-first-client", "k" * 200 + "-second-client"
    for key, reference in ((first, "A-1"), (second, "A-2")):
        response = api.post(URL, request_body(applicant, reference=reference), format="json", HTTP_IDEMPOTENCY_KEY=key)
        assert_field_error(response, "Idempotency-Key")
        assert "200" in response.json()["error"]["fields"]["Idempotency-Key"][0]
    assert not UnderwritingRequest.objects.exists()
    accepted = api.post(URL, request_body(applicant), format="json", HTTP_IDEMPOTENCY_KEY="k" * 200)
    assert accepted.status_code == 202, accepted.content
    assert UnderwritingRequest.objects.get().idempotency_key == "k" * 200


CONTROL_KEYS = ["abc\x01def", "line\r\nbreak", "esc\x1b[31m", "zero\u200bwidth", "nul\x00", "bidi\u202e"]


@pytest.mark.parametrize("key", CONTROL_KEYS)
def test_keys_with_control_characters_are_refused(
    insurer: Insurer,  # noqa: F811
    approved_manuals: Any,  # noqa: F811
    key: str,
) -> None:
    api = client_for(insurer)
    applicant = {"resident_id": ALICE_ID, "name": ALICE_NAME}
    raw = key.encode("utf-8").decode("latin-1")  # as WSGI hands a header over
    assert_field_error(
        api.post(URL, request_body(applicant), format="json", HTTP_IDEMPOTENCY_KEY=raw), "Idempotency-Key"
    )
    batch = api.post(f"{URL}/batch", {"requests": [{**request_body(applicant), "idempotency_key": key}]}, format="json")
    assert batch.status_code == 202, batch.content
    [result] = batch.json()["results"]
    assert "idempotency_key" in result["error"]["fields"]
    assert not UnderwritingRequest.objects.exists()


def test_a_utf8_key_in_the_header_equals_the_same_key_in_a_batch_item(
    insurer: Insurer,  # noqa: F811
    approved_manuals: Any,  # noqa: F811
) -> None:
    api = client_for(insurer)
    body = request_body({"resident_id": ALICE_ID, "name": ALICE_NAME})
    key = "申请-0001"
    single = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY=key.encode().decode("latin-1"))
    assert single.status_code == 202, single.content
    batch = api.post(f"{URL}/batch", {"requests": [{**body, "idempotency_key": key}]}, format="json")
    assert batch.json()["results"][0]["request"]["id"] == single.json()["id"]


# --- 16: resident IDs and names never reach the logs, however the URL spells them ----------------------


RESIDENT = fhir.resident_id(date(1983, 6, 9), sequence=357)
NAME = "欧阳明月"


def full_width(text: str) -> str:
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


def percent_encoded(text: str) -> str:
    return "".join(f"%{byte:02X}" for byte in text.encode())


def spellings(value: str) -> list[str]:
    return [value, full_width(value), percent_encoded(value), percent_encoded(full_width(value)), quote(value)]


def test_ids_and_names_in_urls_do_not_reach_the_logs(insurer: Insurer, log_lines: list[str]) -> None:  # noqa: F811
    api: APIClient = client_for(insurer)
    anonymous = Client()
    for spelled_id in spellings(RESIDENT):
        for spelled_name in spellings(NAME):
            query = f"reference={spelled_id}&name={spelled_name}&{spelled_name}=1"
            api.get(f"{URL}?{query}", HTTP_REFERER=f"https://insurer.example/search?id={spelled_id}")
            # 404s and 405s: Django's own lines name the path, and the request (with its query) rides along.
            api.get(f"{URL}/{spelled_id}?{query}")
            api.get(f"{URL}/{percent_encoded(spelled_id)}")  # encoded twice: the path keeps one layer
            api.delete(f"{URL}/{spelled_name}?{query}")
            anonymous.get(f"/no-such-page/{spelled_name}/{spelled_id}?q={spelled_id}")
            anonymous.get(f"/portal/requests/?q={spelled_name}", HTTP_X_REQUEST_ID=RESIDENT)
    grouped = f"{RESIDENT[:6]} {RESIDENT[6:14]} {RESIDENT[14:]}"
    anonymous.get(f"/no-such-page/{quote(grouped)}")
    assert len(log_lines) > 50

    text = "\n".join(log_lines)
    readable = decoded(text)  # what a person reading the log (or a grep over it, decoded) would see
    for secret in (RESIDENT, RESIDENT[:17], NAME, grouped):
        assert secret not in text, secret
        assert secret not in readable, secret
    # The access lines still say what was asked: method, route, masked path and the parameter names.
    access = [json.loads(line) for line in log_lines if '"logger": "ops.access"' in line]
    listing = next(entry for entry in access if entry["route"] == f"{URL}" and entry["status"] == 200)
    assert listing["path"] == URL
    assert "name" in listing["params"]
    assert "reference" in listing["params"]
    detail = next(entry for entry in access if entry["status"] == 404 and entry["route"] != "unmatched")
    assert detail["path"] == f"{URL}/[redacted]"
    # An unknown page: not one word of it is known, so none is kept; the parameter names still are.
    missing = next(entry for entry in access if entry["route"] == "unmatched")
    assert missing["path"] == "/[redacted]/[redacted]/[redacted]"
    assert missing["params"] == ["q"]


def test_runserver_request_lines_are_redacted() -> None:
    record = logging.LogRecord(
        "django.server", logging.INFO, __file__, 1, '"%s" %s %s',
        (f"GET /portal/requests/?q={quote(NAME)}&id={percent_encoded(RESIDENT)} HTTP/1.1", "200", "512"), None,
    )  # fmt: skip
    for log_filter in (RequestIdFilter(), RedactPersonalData()):
        log_filter.filter(record)
    line = JsonFormatter().format(record)
    assert RESIDENT not in decoded(line)
    assert NAME not in decoded(line)
    assert "GET /portal/requests/ HTTP/1.1" in json.loads(line)["message"]


# --- 18: /metrics is closed in production without a token; the example ID can belong to nobody ---------

METRICS_PROBE = """
import django, json
django.setup()
from django.test import Client
token = {token!r}
headers = {{"HTTP_AUTHORIZATION": "Bearer " + token}} if token else {{}}
response = Client().get("/metrics", secure=True, **headers)
body = response.content.decode(errors="replace")
print(json.dumps({{"status": response.status_code, "metrics": "underwriting_http_requests_total" in body}}))
"""


def probe_metrics(*, env_token: str, sent_token: str) -> dict[str, Any]:
    # The test database (its tables exist), not whatever DATABASE_URL names outside the test run.
    env = production_env(METRICS_TOKEN=env_token, DATABASE_URL=database_url())
    result = run_python(METRICS_PROBE.format(token=sent_token), env)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_production_metrics_without_a_token_are_closed(db: None) -> None:
    assert probe_metrics(env_token="", sent_token="") == {"status": 404, "metrics": False}


def test_production_metrics_answer_the_scraper_with_the_token(db: None) -> None:
    token = "scrape-" + "9f" * 16
    assert probe_metrics(env_token=token, sent_token="") == {"status": 404, "metrics": False}
    assert probe_metrics(env_token=token, sent_token="wrong") == {"status": 404, "metrics": False}
    assert probe_metrics(env_token=token, sent_token=token) == {"status": 200, "metrics": True}


def test_a_non_ascii_authorization_header_is_refused_not_a_500(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = "scrape-token"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer 令牌").status_code == 404


def schema_examples(schema: Any) -> Iterator[Any]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in {"example", "examples", "value"}:
                yield value
            yield from schema_examples(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from schema_examples(item)


def test_the_schemas_example_resident_id_belongs_to_nobody(insurer: Insurer, approved_manuals: Any) -> None:  # noqa: F811
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    text = json.dumps(list(schema_examples(schema)), ensure_ascii=False)
    shaped = set(re.findall(r"(?<![0-9])[1-9][0-9]{16}[0-9X](?![0-9])", text))
    assert shaped, "the examples show a resident ID"
    for value in shaped:
        assert not resident_id_is_valid(value), value
        assert identity.check_character(value[:17]) != value[17]  # the check character is the wrong one
    # Copied as it stands, the example is refused on the ID and creates nothing.
    request_example = schema["paths"][URL]["post"]["requestBody"]["content"]["application/json"]["examples"]
    body = next(iter(request_example.values()))["value"]
    refused = client_for(insurer).post(URL, body, format="json")
    assert_field_error(refused, "applicant.resident_id")
    assert not UnderwritingRequest.objects.exists()


# --- the Content-Security-Policy comes from django-csp, the same in development as in production -------


def test_every_page_has_the_strict_policy_and_the_docs_their_own(client: Client) -> None:
    policy = client.get("/healthz")["Content-Security-Policy"]
    assert policy == (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
        "frame-ancestors 'none'"
    )
    assert client.get("/portal/login/")["Content-Security-Policy"] == policy
    docs = client.get("/api/docs/")["Content-Security-Policy"]
    assert "script-src 'self' 'unsafe-inline';" in docs
    assert "worker-src 'self' blob:" in docs


def test_a_policy_from_the_environment_reads_as_directives() -> None:
    assert csp_directives("default-src 'self'; img-src 'self' data:;; upgrade-insecure-requests") == {
        "default-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "upgrade-insecure-requests": True,
    }


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        (f"{URL}/0b8f5b8e-3a8d-4b35-9d44-6f2f7f1c2a10", f"{URL}/0b8f5b8e-3a8d-4b35-9d44-6f2f7f1c2a10"),
        ("/portal/batches/12/results.xlsx", "/portal/batches/12/results.xlsx"),
        ("/static/vendor/htmx/htmx.min.js", "/static/vendor/htmx/htmx.min.js"),
        (f"/static/{RESIDENT}.js", "/static/[redacted]"),
        (f"/portal/requests/{NAME}/", "/portal/requests/[redacted]/"),
        ("/portal/requests/zhangsan/", "/portal/requests/[redacted]/"),
        ("/portal/requests/13800138000/", "/portal/requests/[redacted]/"),  # a phone number
        (f"/portal/{percent_encoded(percent_encoded(RESIDENT))}", "/portal/[redacted]"),
    ],
)
def test_paths_keep_their_structure_and_lose_their_values(path: str, logged: str) -> None:
    assert redact_path(path) == logged
