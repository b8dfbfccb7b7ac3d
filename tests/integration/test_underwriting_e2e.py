"""The product's main path through real processes: the API in this process, Celery workers over
Redis on the test database (domain, scoring, custodian and webhooks queues), a webhook receiver on
loopback. Every completed tier must equal the plaintext reference evaluator's."""

from __future__ import annotations

import json
import re
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from datadomain.selectors import subject_features
from datadomain.services import subject_key_for
from tests.population import make_population
from tests.underwriting.conftest import request_body
from tests.webhook_receiver import Receiver
from tests.workers import WorkerPool
from underwriting.models import RequestStatus, UnderwritingRequest
from underwriting.reference import builtin_documents, evaluate
from underwriting.services.webhooks import SIGNATURE_HEADER, verify_signature, webhook_endpoint_create

pytestmark = pytest.mark.integration
URL = "/api/v1/underwriting-requests"
TERMINAL = {"completed", "rejected", "unrated", "failed"}
ALLOWED_KEYS = {
    "id", "reference", "status", "reason", "applicant", "resident_id_masked", "manual", "slug", "version", "result",
    "tier", "label", "decision", "table_rating", "created_at", "completed_at", "next", "previous", "results",
    "type", "data",
}  # fmt: skip


class Captured:
    """Every byte an insurer receives, to scan for personal or clinical data."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def add(self, body: bytes) -> bytes:
        self.bodies.append(body)
        return body


@pytest.fixture
def world(celery_workers: WorkerPool, tmp_path: Path, receiver: Receiver, settings: Any) -> dict[str, Any]:
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 100
    world = make_population(tmp_path, patients=40, seed=11, insurer_slug="e2e-life")
    endpoint, secret = webhook_endpoint_create(insurer_id=world["insurer"].pk, url=receiver.url)
    codes = set()
    for line in (tmp_path / "fhir" / "Condition.ndjson").read_text().splitlines():
        codes.add(json.loads(line)["code"]["coding"][0]["code"])
    return {**world, "endpoint": endpoint, "secret": secret, "codes": codes}


def wait_terminal(ids: list[str], timeout: float = 90.0) -> dict[str, UnderwritingRequest]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = {str(r.pk): r for r in UnderwritingRequest.objects.filter(pk__in=ids)}
        if all(row.status in TERMINAL for row in rows.values()) and len(rows) == len(ids):
            return rows
        time.sleep(0.2)
    pending = (
        UnderwritingRequest.objects.filter(pk__in=ids).exclude(status__in=TERMINAL).values_list("status", flat=True)
    )
    raise AssertionError(f"requests not terminal after {timeout}s: {sorted(pending)}")


def test_every_builtin_manual_gives_the_reference_tier(world: dict[str, Any], receiver: Receiver) -> None:
    api: APIClient = world["api"]
    captured = Captured()
    documents = builtin_documents()
    submitted: list[tuple[str, dict[str, str], str]] = []
    for index, person in enumerate(world["people"][:32]):
        manual = sorted(documents)[index % len(documents)]
        response = api.post(URL, request_body(person, reference=f"E2E-{index}", manual=manual), format="json")
        assert response.status_code == 202, response.content
        captured.add(response.content)
        submitted.append((response.json()["id"], person, manual))

    rows = wait_terminal([request_id for request_id, _, _ in submitted])

    tiers_seen: dict[str, set[str]] = {}
    for request_id, person, manual in submitted:
        row = rows[request_id]
        assert row.status == RequestStatus.COMPLETED, (row.status, row.reason)
        document = documents[manual]
        features = subject_features(
            subject_key=subject_key_for(person["resident_id"]), feature_names=document.feature_names, as_of=row.as_of
        )
        expected = evaluate(document, features).tier
        assert (row.tier_code, row.decision) == (expected.code, expected.decision), manual
        tiers_seen.setdefault(manual, set()).add(row.tier_code)
        detail = api.get(f"{URL}/{request_id}", {"wait": "2"})
        captured.add(detail.content)
        assert detail.json()["result"]["tier"] == expected.code
    assert set(tiers_seen) == set(documents)
    assert len(set().union(*tiers_seen.values())) >= 2, "the synthetic population should span several tiers"

    deadline = time.monotonic() + 30
    while len(receiver.received) < len(submitted) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(receiver.received) == len(submitted)
    for delivery in receiver.received:
        assert verify_signature(world["secret"], delivery.headers[SIGNATURE_HEADER], delivery.body)
        assert json.loads(delivery.body)["type"] == "request.completed"
        captured.add(delivery.body)
    page = api.get(URL, {"page_size": 100})
    captured.add(page.content)
    assert_no_personal_or_clinical_data(captured, world)


def test_unknown_ids_wrong_names_and_invalid_consent_get_one_reason_and_each_other_reason_is_produced(
    world: dict[str, Any], settings: Any
) -> None:
    from tests import fhir

    api: APIClient = world["api"]
    alice, bob = world["people"][0], world["people"][1]
    for name in (
        "UNDERWRITING_RATE_LIMIT_COUNT",
        "UNDERWRITING_SUBJECT_LIMIT_COUNT",
        "UNDERWRITING_SUBJECT_LIMIT_YEAR",
    ):
        setattr(settings, name, 100)  # refused requests count too: keep the limits out of the way here
    marketing = request_body(alice, scope=["marketing"])
    marketing["consent"]["reference"] = "CONSENT-MARKETING"  # CONSENT-1 is recorded with another scope
    cases = [
        (
            "not_verified",
            request_body({"resident_id": fhir.resident_id(date(1977, 7, 7), sequence=999), "name": "无名"}),
        ),
        ("not_verified", request_body({**alice, "name": "不是本人"})),
        ("not_verified", marketing),
        ("manual_not_approved", request_body(alice, manual="unknown-manual")),
    ]
    outcomes = [api.post(URL, body, format="json").json() for _, body in cases]
    assert [(o["status"], o["reason"]) for o in outcomes] == [("rejected", expected) for expected, _ in cases]
    # The consent reference CONSENT-1 is recorded by the cases above with other evidence: the insurer's own
    # input, refused like an invalid field, with no request made.
    reused = api.post(URL, request_body(alice, artifact_sha256="f" * 64), format="json")
    assert reused.status_code == 400
    assert list(reused.json()["error"]["fields"]) == ["consent.reference"]
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 1
    api.post(URL, request_body(bob, reference="first"), format="json")
    assert api.post(URL, request_body(bob, reference="second"), format="json").json()["reason"] == "rate_limited"


def assert_no_personal_or_clinical_data(captured: Captured, world: dict[str, Any]) -> None:
    text = b"\n".join(captured.bodies).decode()
    for person in world["people"]:
        assert person["resident_id"] not in text
        assert person["name"] not in text
    for code in world["codes"]:
        assert not re.search(rf"\b{re.escape(code)}\b", text), code
    for body in captured.bodies:
        assert_keys_allowed(json.loads(body))


def assert_keys_allowed(value: Any) -> None:
    if isinstance(value, dict):
        assert set(value) <= ALLOWED_KEYS, set(value) - ALLOWED_KEYS
        for item in value.values():
            assert_keys_allowed(item)
    elif isinstance(value, list):
        for item in value:
            assert_keys_allowed(item)


def test_sweeper_recovers_a_request_whose_task_was_lost(world: dict[str, Any], settings: Any) -> None:
    """The request committed but its message never reached the broker (e.g. Redis was down then)."""
    from datetime import timedelta

    from django.utils import timezone

    from underwriting.selectors import manual_for_use
    from underwriting.services.pipeline import requests_sweep

    person = world["people"][2]
    manual = manual_for_use(slug="charlson-acci", insurer_slug="builtin")
    assert manual is not None
    request = UnderwritingRequest.objects.create(
        insurer=world["insurer"], reference="LOST", subject_key=subject_key_for(person["resident_id"]),
        resident_id_masked="x", manual=manual, manual_slug=manual.slug, as_of=timezone.localdate(),
        status=RequestStatus.EXTRACTING,
    )  # fmt: skip
    UnderwritingRequest.objects.filter(pk=request.pk).update(updated_at=timezone.now() - timedelta(minutes=5))

    assert requests_sweep() == 1
    row = wait_terminal([str(request.pk)], timeout=30)[str(request.pk)]

    assert row.status == RequestStatus.COMPLETED
    assert row.attempts == 1
    features = subject_features(
        subject_key=request.subject_key,
        feature_names=builtin_documents()["charlson-acci"].feature_names,
        as_of=row.as_of,
    )
    assert row.tier_code == evaluate(builtin_documents()["charlson-acci"], features).tier.code
