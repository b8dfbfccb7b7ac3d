"""The REST API v1, synchronous part: auth, validation, verification outcomes, isolation, idempotency.

The asynchronous scoring path runs in tests/integration through real workers.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from insurer_portal.services import api_key_revoke
from tenants.models import ApiKey, Insurer
from tests.underwriting.conftest import ALICE_ID, request_body
from underwriting.models import RatingManual, UnderwritingRequest

URL = "/api/v1/underwriting-requests"
pytestmark = pytest.mark.django_db


def submit(api: APIClient, body: dict[str, Any], **headers: str) -> Any:
    return api.post(URL, body, format="json", **headers)


def test_requires_an_api_key(client: Any) -> None:
    response = client.get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Bearer"


def test_refuses_a_revoked_key(insurer: Insurer) -> None:
    from tests.underwriting.conftest import client_for

    api = client_for(insurer)
    api_key_revoke(key=ApiKey.objects.get(insurer=insurer))
    response = api.get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_records_when_a_key_was_last_used(api: APIClient, insurer: Insurer) -> None:
    assert api.get(URL).status_code == 200
    assert ApiKey.objects.get(insurer=insurer).last_used_at is not None


def test_invalid_body_gets_field_errors_without_echoing_the_id(api: APIClient) -> None:
    body = request_body({"resident_id": "370214195003141230", "name": ""}, manual="Not A Slug")
    body["consent"]["artifact_sha256"] = "xyz"
    response = submit(api, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert set(error["fields"]) == {"applicant.resident_id", "applicant.name", "manual", "consent.artifact_sha256"}
    assert "370214195003141230" not in response.content.decode()


def test_completes_verification_and_queues_scoring(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    response = submit(api, request_body(alice))
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "extracting"
    assert body["applicant"] == {"resident_id_masked": ALICE_ID[:6] + "********" + ALICE_ID[-4:]}
    assert body["manual"] == {"slug": "charlson-acci", "version": 1}
    assert body["result"] is None
    assert alice["name"] not in response.content.decode()
    row = UnderwritingRequest.objects.get(pk=body["id"])
    assert [e.to_status for e in row.events.all()] == ["received", "verifying", "extracting"]


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"name": "李四"}, "rejected", "not_verified"),
        ({"consent": {"scope": ["marketing"]}}, "rejected", "not_verified"),
        ({"consent": {"expires_at": "2026-02-01T00:00:00+08:00"}}, "rejected", "not_verified"),
        ({"consent": {"signed_at": "2099-01-01T00:00:00+08:00"}}, "rejected", "not_verified"),
        ({"manual": "no-such-manual"}, "rejected", "manual_not_approved"),
    ],
)
def test_rejects_with_a_machine_reason(
    api: APIClient,
    alice: dict[str, str],
    approved_manuals: list[RatingManual],
    change: dict[str, Any],
    status: str,
    reason: str,
) -> None:
    applicant = {**alice, **({"name": change["name"]} if "name" in change else {})}
    body = request_body(applicant, manual=change.get("manual", "charlson-acci"), **change.get("consent", {}))
    response = submit(api, body)
    assert response.status_code == 202
    assert (response.json()["status"], response.json()["reason"]) == (status, reason)


def test_identity_mismatch_does_not_say_what_differed(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    response = submit(api, request_body({**alice, "name": "李四"}))
    assert "name" not in response.json()["reason"]
    assert "李四" not in response.content.decode()


def test_unknown_subject_is_refused_like_a_wrong_name(api: APIClient, approved_manuals: list[RatingManual]) -> None:
    from datetime import date

    from tests import fhir

    stranger = {"resident_id": fhir.resident_id(date(1980, 1, 1), sequence=555), "name": "赵六"}
    response = submit(api, request_body(stranger))
    assert (response.json()["status"], response.json()["reason"]) == ("rejected", "not_verified")


def test_a_draft_manual_cannot_be_used(api: APIClient, alice: dict[str, str], author: Any) -> None:
    from underwriting.reference import builtin_manual_paths
    from underwriting.services.manuals import manual_upload

    manual_upload(text=builtin_manual_paths()[0].read_text(), uploaded_by=author)
    response = submit(api, request_body(alice))
    assert response.json()["reason"] == "manual_not_approved"


def test_rate_limit_per_insurer_and_subject(
    api: APIClient, other_api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual], settings: Any
) -> None:
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 2
    outcomes = [submit(api, request_body(alice, reference=f"R{i}")).json()["reason"] for i in range(3)]
    assert outcomes == [None, None, "rate_limited"]
    assert submit(other_api, request_body(alice)).json()["reason"] is None


def test_idempotency_key_replays_and_conflicts(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    first = submit(api, request_body(alice), HTTP_IDEMPOTENCY_KEY="k-1")
    again = submit(api, request_body(alice), HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert UnderwritingRequest.objects.count() == 1
    conflict = submit(api, request_body(alice, reference="OTHER"), HTTP_IDEMPOTENCY_KEY="k-1")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"


def test_other_insurers_requests_are_404(
    api: APIClient, other_api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    request_id = submit(api, request_body(alice)).json()["id"]
    assert api.get(f"{URL}/{request_id}").status_code == 200
    response = other_api.get(f"{URL}/{request_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert other_api.get(URL).json()["results"] == []
    assert api.get(f"{URL}/not-a-uuid").status_code == 404


def test_list_filters_and_cursor_pagination(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual], settings: Any
) -> None:
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 10
    for index in range(5):
        submit(api, request_body(alice, reference=f"REF-{index}"))
    submit(api, request_body({**alice, "name": "李四"}, reference="BAD"))
    page = api.get(URL, {"page_size": 2}).json()
    assert [item["reference"] for item in page["results"]] == ["BAD", "REF-4"]
    second = api.get(page["next"]).json()
    assert [item["reference"] for item in second["results"]] == ["REF-3", "REF-2"]
    assert [r["reference"] for r in api.get(URL, {"status": "rejected"}).json()["results"]] == ["BAD"]
    assert [r["reference"] for r in api.get(URL, {"reference": "REF-1"}).json()["results"]] == ["REF-1"]
    assert api.get(URL, {"created_after": "2099-01-01T00:00:00+08:00"}).json()["results"] == []
    assert api.get(URL, {"status": "bogus"}).status_code == 400
    assert api.get(URL, {"created_after": "yesterday"}).status_code == 400


def test_wait_is_bounded_and_validated(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    request_id = submit(api, request_body({**alice, "name": "李四"})).json()["id"]
    assert api.get(f"{URL}/{request_id}", {"wait": "5"}).json()["status"] == "rejected"  # terminal: no wait
    assert api.get(f"{URL}/{request_id}", {"wait": "11"}).status_code == 400
    assert api.get(f"{URL}/{request_id}", {"wait": "soon"}).status_code == 400


def test_throttles_per_key_with_retry_after(api: APIClient, settings: Any) -> None:
    settings.API_THROTTLE_RATE = "3/min"
    cache.clear()
    statuses = [api.get(URL).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = api.get(URL)
    assert response.json()["error"]["code"] == "throttled"
    assert int(response["Retry-After"]) > 0
    cache.clear()


def test_schema_documents_the_api(client: Any) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert "/api/v1/underwriting-requests" in schema["paths"]
    assert "/api/v1/underwriting-requests/{request_id}" in schema["paths"]
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_withdrawn_consent_is_refused(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    from datadomain.services import consent_withdraw

    first = submit(api, request_body(alice, reference="A"))
    assert first.json()["reason"] is None
    consent_withdraw(consent_id=UnderwritingRequest.objects.get(pk=first.json()["id"]).consent_id)
    again = submit(api, request_body(alice, reference="B"))  # same consent reference, now withdrawn
    assert (again.json()["status"], again.json()["reason"]) == ("rejected", "not_verified")


def test_consent_reference_reused_with_other_evidence_is_invalid_input(
    api: APIClient, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    submit(api, request_body(alice, reference="A"))
    response = submit(api, request_body(alice, reference="B", artifact_sha256="b" * 64))
    assert response.status_code == 400  # the insurer's own input, refused like an invalid field: no request
    error = response.json()["error"]
    assert (error["code"], list(error["fields"])) == ("invalid_input", ["consent.reference"])
    assert UnderwritingRequest.objects.count() == 1


def test_odd_time_zone_offsets_in_filters_are_handled(api: APIClient) -> None:
    assert api.get(URL, {"created_after": "2026-01-01T00:00:00-18:38"}).status_code == 200
    assert api.get(URL, {"created_after": "0001-01-01T00:00:00+23:59"}).status_code == 400
    assert api.get(URL, {"created_after": "2026-13-45T00:00:00+08:00"}).status_code == 400
