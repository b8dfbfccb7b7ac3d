"""The pipeline's stages take requests a chunk at a time: a constant number of queries per chunk, one
custodian message per chunk, and a request that cannot be processed fails alone."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from datadomain.selectors import subject_features
from datadomain.services import subject_erase, subject_key_for
from tests.population import make_population
from tests.underwriting.conftest import request_body
from underwriting.models import RequestEvent, RequestStatus, UnderwritingRequest
from underwriting.reference import builtin_documents, evaluate
from underwriting.services import pipeline
from underwriting.services.pipeline import stage_drain
from underwriting.services.state import transition_many

pytestmark = pytest.mark.django_db
URL = "/api/v1/underwriting-requests"


@pytest.fixture
def world(tmp_path: Path, settings: Any, in_process_tasks: None) -> dict[str, Any]:
    settings.CUSTODIAN_KEY_DIR = tmp_path / "keys"
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 1000
    world = make_population(tmp_path, patients=30, seed=23, insurer_slug="chunk-life")
    # The steady state: vectors precomputed in bulk (a stale or missing one is extracted on demand).
    call_command("precompute_features", "--no-progress", "--processes", "1", stdout=StringIO())
    return world


def submit(world: dict[str, Any], count: int, prefix: str, capture: Any) -> list[str]:
    ids = []
    with capture(execute=True):
        for index in range(count):
            person = world["people"][index % len(world["people"])]
            body = request_body(person, reference=f"{prefix}-{index}")
            body["consent"]["reference"] = f"C-{prefix}-{index}"
            response = world["api"].post(URL, body, format="json")
            assert response.status_code == 202, response.content
            assert response.json()["status"] == "extracting"
            ids.append(response.json()["id"])
    return ids


def drain_counting(stage: str, capture: Any) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries, capture(execute=True):
        claimed = stage_drain(stage)
    return claimed, len(queries)


def test_a_chunk_costs_the_same_queries_whatever_its_size(
    world: dict[str, Any], held: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    warm = submit(world, 1, "W", django_capture_on_commit_callbacks)  # per-process caches: keys, manual
    small = submit(world, 3, "S", django_capture_on_commit_callbacks)
    large = submit(world, 30, "L", django_capture_on_commit_callbacks)
    later = [*small, *large]
    UnderwritingRequest.objects.filter(pk__in=later).update(status=RequestStatus.VERIFYING)  # set aside
    counts = {}
    for name, ids in (("warm", warm), ("small", small), ("large", large)):
        UnderwritingRequest.objects.filter(pk__in=ids).update(status=RequestStatus.EXTRACTING)
        claimed, extract_queries = drain_counting("extract", django_capture_on_commit_callbacks)
        assert claimed == len(ids)
        assert set(UnderwritingRequest.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"scoring"}
        # Scoring sends one custodian message for the chunk; in-process, the custodian and the
        # finalisation run inside this drain, so their queries are counted here too.
        claimed, score_queries = drain_counting("score", django_capture_on_commit_callbacks)
        assert claimed == len(ids)
        counts[name] = (extract_queries, score_queries)
    assert counts["small"] == counts["large"], counts
    assert held == ["extract"] * 34 + ["score"] * 3

    document = builtin_documents()["charlson-acci"]
    people = {subject_key_for(p["resident_id"]): p for p in world["people"]}
    for request in UnderwritingRequest.objects.filter(pk__in=warm + later):
        assert request.status == RequestStatus.COMPLETED, (request.status, request.reason)
        assert request.subject_key in people
        features = subject_features(
            subject_key=request.subject_key, feature_names=document.feature_names, as_of=request.as_of
        )
        expected = evaluate(document, features)
        assert request.tier_code == expected.tier.code
        timeline = list(
            RequestEvent.objects.filter(request=request).order_by("at", "id").values_list("to_status", flat=True)
        )
        assert timeline == ["received", "verifying", "extracting", "scoring", "tiering", "completed"]


def test_a_request_that_cannot_be_extracted_fails_alone(
    world: dict[str, Any], held: list[str], django_capture_on_commit_callbacks: Any, admin_user: Any
) -> None:
    ids = submit(world, 3, "E", django_capture_on_commit_callbacks)
    erased = UnderwritingRequest.objects.get(pk=ids[1])
    subject_erase(resident_id=world["people"][1]["resident_id"], by=admin_user.username)
    with django_capture_on_commit_callbacks(execute=True):
        stage_drain("extract")
        stage_drain("score")
    statuses = dict(UnderwritingRequest.objects.filter(pk__in=ids).values_list("pk", "status"))
    # Erasure withdraws the subject's consent: extraction's consent check stops the request (rejected,
    # consent_withdrawn) before it looks for the erased records.
    assert statuses[erased.pk] == RequestStatus.REJECTED
    assert UnderwritingRequest.objects.get(pk=erased.pk).reason == "consent_withdrawn"
    assert [statuses[UnderwritingRequest.objects.get(pk=pk).pk] for pk in (ids[0], ids[2])] == ["completed"] * 2
    assert held == ["extract"] * 3 + ["score"]


def test_transition_many_sets_each_rows_fields_and_skips_rows_that_moved_on(
    world: dict[str, Any], held: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    ids = [
        UnderwritingRequest.objects.get(pk=pk).pk for pk in submit(world, 3, "T", django_capture_on_commit_callbacks)
    ]
    UnderwritingRequest.objects.filter(pk=ids[2]).update(status=RequestStatus.SCORING)  # another drain won
    moved = transition_many(
        {ids[0]: {"attempts": 4}, ids[1]: {"attempts": 5}, ids[2]: {"attempts": 6}},
        from_status=RequestStatus.EXTRACTING,
        to_status=RequestStatus.SCORING,
    )
    assert sorted(moved) == sorted(ids[:2])
    attempts = dict(UnderwritingRequest.objects.filter(pk__in=ids).values_list("pk", "attempts"))
    assert attempts[ids[0]] == 4
    assert attempts[ids[1]] == 5
    assert attempts[ids[2]] == 0  # untouched
    assert RequestEvent.objects.filter(request_id=ids[2], to_status=RequestStatus.SCORING).count() == 0
    assert RequestEvent.objects.filter(request_id__in=ids[:2], to_status=RequestStatus.SCORING).count() == 2


def test_a_long_backlog_is_handed_to_a_fresh_drain(
    world: dict[str, Any], held: list[str], django_capture_on_commit_callbacks: Any, settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    settings.UNDERWRITING_STAGE_CHUNK = 2
    monkeypatch.setattr(pipeline, "DRAIN_SECONDS", 0.0)  # every chunk is past the drain's time budget
    ids = submit(world, 5, "B", django_capture_on_commit_callbacks)
    held.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert stage_drain("extract") == 2  # one chunk, then the rest goes to a new drain task
    assert sorted(held) == ["extract", "score"]
    statuses = sorted(UnderwritingRequest.objects.filter(pk__in=ids).values_list("status", flat=True))
    assert statuses == ["extracting"] * 3 + ["scoring"] * 2


def test_a_time_limit_fails_the_chunk_for_a_retry_not_the_request(
    world: dict[str, Any], held: list[str], django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    ids = submit(world, 2, "TL", django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        stage_drain("extract")

    def out_of_time(request: Any, given: Any) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(pipeline, "_scoring_item", out_of_time)
    with pytest.raises(SoftTimeLimitExceeded):
        stage_drain("score")
    assert set(UnderwritingRequest.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"scoring"}


def test_extraction_issues_one_bound_grant_per_request_and_scoring_keeps_its_secrets_apart(
    world: dict[str, Any], held: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    """Submission issues no grant; extraction issues exactly one per request, pinned to the active key,
    the manual's three comparisons and an expiry, with its MAC key out of the worker's reach; scoring
    turns the domain's input into the worker's own secret state and deletes the input."""
    from datadomain.keyring import active_key_id
    from datadomain.models import ComparisonGrant
    from securecompute.binding import binding_params
    from underwriting.models import ScoringInput, TieringSecret

    ids = submit(world, 3, "G", django_capture_on_commit_callbacks)
    assert not ComparisonGrant.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        stage_drain("extract")
    grants = {g.request_ref: g for g in ComparisonGrant.objects.all()}
    assert set(grants) == set(ids)
    for grant in grants.values():
        assert (grant.key_id, grant.comparisons, grant.status) == (active_key_id(), 3, "issued")
        assert grant.expires_at > grant.created_at
        params = binding_params(2048, grant.slot_bits, 3)
        assert int(grant.mac_key, 16).bit_length() == params.mac_bits == params.value_bits + 128
    inputs = ScoringInput.objects.filter(request_id__in=ids)
    assert inputs.count() == 3
    assert all(grants[str(i.request_id)].mac_key not in i.tags + i.features for i in inputs)
    with django_capture_on_commit_callbacks(execute=False):
        stage_drain("score")
    assert not ScoringInput.objects.filter(request_id__in=ids).exists()
    assert TieringSecret.objects.filter(request_id__in=ids).count() == 3
