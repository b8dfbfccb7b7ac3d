"""POST /api/v1/underwriting-requests/batch, and what a single POST costs in queries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tenants.models import ApiKey
from tests import fhir
from tests.underwriting.conftest import ALICE_ID, request_body, statements
from underwriting.models import RatingManual, UnderwritingRequest

URL = "/api/v1/underwriting-requests"
BATCH_URL = f"{URL}/batch"
pytestmark = pytest.mark.django_db


def post_batch(api: APIClient, items: list[Any]) -> Any:
    return api.post(BATCH_URL, {"requests": items}, format="json")


def body(applicant: dict[str, str], reference: str, consent: str, **fields: str) -> dict[str, Any]:
    """A request body with its own consent reference (so its evidence is new), plus item fields."""
    made = request_body(applicant, reference=reference)
    made["consent"]["reference"] = consent
    return {**made, **fields}


@pytest.fixture
def people(ingest: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, str]]:
    """110 residents the domain knows, as the insurer sends them."""
    births = [date(1970, 1, 1) + timedelta(days=i) for i in range(110)]
    found = [
        {"resident_id": fhir.resident_id(born, sequence=300 + i), "name": f"申请人{i}"} for i, born in enumerate(births)
    ]
    ingest([fhir.patient(f"p-{i}", p["resident_id"], p["name"], births[i]) for i, p in enumerate(found)])
    return found


def test_results_come_in_input_order_and_a_bad_item_stops_nothing(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    bad = request_body({"resident_id": "370214195003141230", "name": "某人"}, reference="BAD")  # wrong check digit
    items = [
        request_body(alice, reference="A"),
        bad,
        "not an object",
        request_body({**alice, "name": "李四"}, reference="C"),
    ]
    response = post_batch(api, items)
    assert response.status_code == 202
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert (results[0]["request"]["status"], results[0]["request"]["reference"]) == ("extracting", "A")
    assert results[1]["error"]["code"] == "invalid_input"
    assert set(results[1]["error"]["fields"]) == {"applicant.resident_id"}
    assert set(results[2]["error"]["fields"]) == {"non_field_errors"}
    assert (results[3]["request"]["status"], results[3]["request"]["reason"]) == ("rejected", "not_verified")
    assert UnderwritingRequest.objects.count() == 2
    text = response.content.decode()
    assert "370214195003141230" not in text
    assert ALICE_ID not in text
    assert alice["name"] not in text
    assert "李四" not in text
    assert "某人" not in text


def test_requests_are_linked_to_the_key_that_sent_them(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    request_id = post_batch(api, [request_body(alice)]).json()["results"][0]["request"]["id"]
    assert UnderwritingRequest.objects.get(pk=request_id).api_key_id == ApiKey.objects.get().pk


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"requests": []}, "requests"),
        ({"requests": {"reference": "A"}}, "requests"),
        ({"requests": "A"}, "requests"),
        ({}, "requests"),
        ([{"reference": "A"}], "non_field_errors"),
    ],
)
def test_a_body_that_is_not_a_list_of_items_is_refused_whole(api: APIClient, body: Any, field: str) -> None:
    response = api.post(BATCH_URL, body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert set(error["fields"]) == {field}


def test_at_most_api_batch_max_items(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual], settings: Any
) -> None:
    settings.API_BATCH_MAX_ITEMS = 2
    response = post_batch(api, [request_body(alice, reference=f"R{i}") for i in range(3)])
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"requests"}
    assert not UnderwritingRequest.objects.exists()


def test_item_idempotency_keys_replay_and_conflict(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    first = post_batch(api, [{**request_body(alice), "idempotency_key": "k-1"}]).json()["results"][0]
    again = post_batch(
        api,
        [
            {**request_body(alice), "idempotency_key": "k-1"},
            {**request_body(alice, reference="X"), "idempotency_key": "k-1"},
        ],
    ).json()["results"]
    assert again[0]["request"]["id"] == first["request"]["id"]
    assert again[1]["error"]["code"] == "idempotency_conflict"
    # The same body under the same key through the single POST is the same request.
    single = api.post(URL, request_body(alice), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert (single.status_code, single.json()["id"]) == (202, first["request"]["id"])
    assert UnderwritingRequest.objects.count() == 1


def test_the_batch_path_is_not_taken_for_a_request_id(api: APIClient) -> None:
    assert api.get(BATCH_URL).status_code == 405


def test_schema_documents_the_batch(client: Any) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/v1/underwriting-requests/batch"]["post"]
    assert operation["operationId"] == "underwriting_requests_batch_create"
    assert "202" in operation["responses"]
    body = schema["components"]["schemas"]["BatchInput"]["properties"]["requests"]
    assert (body["minItems"], body["maxItems"]) == (1, 500)


def test_a_single_post_costs_a_dozen_queries(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual], django_assert_max_num_queries: Any
) -> None:
    api.post(URL, body(alice, "warm", "W"), format="json")  # the key's last use noted, the manual parsed
    # 14 and the test transaction's savepoint pair: API key, subject lock, idempotency key, manual, the
    # insurer's consent policy, rate limit, identity, consent (select, withdrawals, insert, audit), request,
    # events, audit.
    with django_assert_max_num_queries(16):
        response = api.post(URL, body(alice, "R", "C-new"), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.json()["status"] == "extracting"


def test_a_batch_costs_the_same_queries_for_10_or_100_items(
    api: APIClient,
    people: list[dict[str, str]],
    approved_manuals: list[RatingManual],
) -> None:
    post_batch(api, [body(people[0], "warm", "W")])
    counts = []
    for chosen, tag in ((people[1:11], "a"), (people[11:111], "b")):
        items = [body(p, f"{tag}{i}", f"C-{tag}{i}", idempotency_key=f"{tag}{i}") for i, p in enumerate(chosen)]
        with CaptureQueriesContext(connection) as queries:
            response = post_batch(api, items)
        assert [r["request"]["status"] for r in response.json()["results"]] == ["extracting"] * len(chosen)
        counts.append(statements(queries))
    assert counts[0] == counts[1], counts
    assert counts[0] <= 16, counts


def test_each_item_counts_against_the_keys_batch_rate(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual], settings: Any
) -> None:
    from django.core.cache import cache

    settings.API_BATCH_THROTTLE_RATE = "5/min"
    cache.clear()
    three = [body(alice, f"T{i}", f"CT{i}") for i in range(3)]
    assert post_batch(api, three).status_code == 202
    refused = post_batch(api, [body(alice, f"U{i}", f"CU{i}") for i in range(3)])  # 6 items > 5 a minute
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "throttled"
    assert int(refused["Retry-After"]) > 0
    assert not UnderwritingRequest.objects.filter(reference__startswith="U").exists()  # nothing half-taken
    assert post_batch(api, [body(alice, "V0", "CV0"), body(alice, "V1", "CV1")]).status_code == 202  # 5 fit
    cache.clear()
