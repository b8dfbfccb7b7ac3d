"""Scoring packs the comparisons of a chunk's requests into few ciphertexts (securecompute.binding,
"Packing several requests") under a 3072-bit key: each request still gets its own tier and its own grant
is charged, the chunk's queries stay constant in its size, and a pack sent again gets the same answers."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from datadomain.models import ComparisonGrant
from datadomain.selectors import subject_features
from tests.packing import packing_key, packing_keypair  # noqa: F401 (fixtures)
from tests.population import make_population
from tests.underwriting.test_pipeline_chunks import drain_counting, submit
from underwriting.models import RequestStatus, TieringSecret, UnderwritingRequest
from underwriting.reference import builtin_documents, evaluate
from underwriting.services import pipeline

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("packing_key")]


@pytest.fixture
def world(tmp_path: Path, settings: Any, in_process_tasks: None) -> dict[str, Any]:
    settings.CUSTODIAN_KEY_DIR = tmp_path / "keys"
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 1000
    return make_population(tmp_path, patients=20, seed=29, insurer_slug="pack-life")


def test_a_packed_chunk_completes_each_request_with_its_own_tier_in_constant_queries(
    world: dict[str, Any], held: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    call_command("precompute_features", "--no-progress", "--processes", "1", stdout=StringIO())
    warm = submit(world, 3, "W", django_capture_on_commit_callbacks)  # per-process caches: keys, manual
    small = submit(world, 4, "S", django_capture_on_commit_callbacks)
    large = submit(world, 16, "L", django_capture_on_commit_callbacks)
    UnderwritingRequest.objects.filter(pk__in=[*small, *large]).update(status=RequestStatus.VERIFYING)
    counts = {}
    for name, ids in (("warm", warm), ("small", small), ("large", large)):
        UnderwritingRequest.objects.filter(pk__in=ids).update(status=RequestStatus.EXTRACTING)
        drain_counting("extract", django_capture_on_commit_callbacks)
        claimed, queries = drain_counting("score", django_capture_on_commit_callbacks)  # custodian included
        assert claimed == len(ids)
        counts[name] = queries
    assert counts["small"] == counts["large"], counts

    document = builtin_documents()["charlson-acci"]
    requests = UnderwritingRequest.objects.filter(pk__in=[*warm, *small, *large])
    for request in requests:
        assert request.status == RequestStatus.COMPLETED, (request.status, request.reason)
        features = subject_features(
            subject_key=request.subject_key, feature_names=document.feature_names, as_of=request.as_of
        )
        assert request.tier_code == evaluate(document, features).tier.code
    grants = ComparisonGrant.objects.filter(request_ref__in=[str(r.pk) for r in requests])
    assert grants.count() == 23
    assert set(grants.values_list("status", flat=True)) == {"answered"}
    assert len(set(grants.filter(request_ref__in=large).values_list("query_sha256", flat=True))) == 1  # one pack


def test_a_pack_sent_again_is_answered_as_before(
    world: dict[str, Any], held: list[str], django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = submit(world, 5, "R", django_capture_on_commit_callbacks)
    drain_counting("extract", django_capture_on_commit_callbacks)
    sent: list[Any] = []
    monkeypatch.setattr(pipeline, "_ask_custodian", lambda queries: sent.append(queries) or True)
    drain_counting("score", django_capture_on_commit_callbacks)
    [queries] = sent
    assert len(queries) == 1  # five requests, one packed query
    assert TieringSecret.objects.filter(request_id__in=ids).count() == 5
    assert (
        pipeline._stored_queries(list(UnderwritingRequest.objects.filter(pk__in=ids[1:]).values_list("pk", flat=True)))
        == queries
    )

    from datadomain import custodian

    first = {ref: reply.answer for ref, reply in custodian.comparisons_answer_many(queries=queries).items()}
    again = {ref: reply.answer for ref, reply in custodian.comparisons_answer_many(queries=queries).items()}
    assert first == again
    assert set(first) == set(ids)
    assert pipeline.requests_finalize(answers=first) == 5
