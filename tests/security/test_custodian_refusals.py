"""The key custodian, through the service its Celery task calls, refuses what a compromised scoring worker
could send: malformed ciphertexts, queries for another request, and comparisons beyond a request's budget.
A refusal spends no budget and decrypts nothing."""

from __future__ import annotations

from typing import Any

import pytest

from datadomain import custodian, keyring
from datadomain.errors import DomainError
from datadomain.services import comparison_grant_create
from securecompute.errors import BudgetExceededError, ProtocolError, SecureComputeError
from securecompute.tiering import build_tier_query

pytestmark = pytest.mark.django_db
THRESHOLDS = [2, 4, 6]


@pytest.fixture
def query() -> dict[str, Any]:
    key = custodian.keypair_create(bits=2048)
    public_key = keyring.public_key(key.key_id)
    comparison_grant_create(request_ref="req-1", budget=len(THRESHOLDS), key_id=key.key_id)
    built, _ = build_tier_query(public_key, public_key.encrypt(5), THRESHOLDS, request_id="req-1", score_bound=100)
    return dict(built.to_dict())


def used() -> int:
    from datadomain.models import ComparisonGrant

    return int(ComparisonGrant.objects.get(request_ref="req-1").used)


def test_answers_a_well_formed_query_within_budget(query: dict[str, Any]) -> None:
    answer = custodian.comparisons_answer(request_ref="req-1", query=query)
    assert set(answer) >= {"request_id"}
    assert used() == len(THRESHOLDS)
    assert custodian.comparisons_answer(request_ref="req-1", query=query) == answer  # a redelivery is free
    assert used() == len(THRESHOLDS)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda q: {**q, "ciphertexts": ["zz-not-hex"]}, id="not-hex"),
        pytest.param(lambda q: {**q, "ciphertexts": ["0"]}, id="zero"),
        pytest.param(lambda q: {**q, "ciphertexts": ["f" * 2048]}, id="beyond-n-squared"),
        pytest.param(lambda q: {**q, "ciphertexts": "deadbeef"}, id="not-a-list"),
        pytest.param(lambda q: {**q, "ciphertexts": q["ciphertexts"] * 2}, id="more-ciphertexts-than-declared"),
        pytest.param(lambda q: {**q, "comparisons": -1}, id="negative-count"),
        pytest.param(lambda q: {k: v for k, v in q.items() if k != "key_id"}, id="no-key"),
        pytest.param(lambda q: {**q, "key_id": "0" * 64}, id="unknown-key"),
    ],
)
def test_refuses_malformed_queries_without_spending_budget(query: dict[str, Any], tamper: Any) -> None:
    with pytest.raises((SecureComputeError, DomainError, ValueError, TypeError, KeyError)) as refused:
        custodian.comparisons_answer(request_ref="req-1", query=tamper(query))
    assert "ciphertexts" not in str(refused.value) or len(str(refused.value)) < 200  # no echo of the input
    assert used() == 0


def test_refuses_a_query_for_another_request(query: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        custodian.comparisons_answer(request_ref="req-2", query=query)
    assert used() == 0


def test_refuses_comparisons_beyond_the_budget(query: dict[str, Any]) -> None:
    custodian.comparisons_answer(request_ref="req-1", query=query)
    public_key = keyring.public_key(query["key_id"])
    second, _ = build_tier_query(public_key, public_key.encrypt(1), THRESHOLDS, request_id="req-1", score_bound=100)
    with pytest.raises(BudgetExceededError):
        custodian.comparisons_answer(request_ref="req-1", query=dict(second.to_dict()))
    assert used() == len(THRESHOLDS)


def test_refuses_a_request_without_a_grant(query: dict[str, Any]) -> None:
    from datadomain.models import ComparisonGrant

    ComparisonGrant.objects.all().delete()
    with pytest.raises(BudgetExceededError):
        custodian.comparisons_answer(request_ref="req-1", query=query)


def test_a_chunk_answers_each_query_and_refuses_only_the_bad_one(query: dict[str, Any]) -> None:
    from audit.models import AuditEntry

    key_id = query["key_id"]
    comparison_grant_create(request_ref="req-2", budget=len(THRESHOLDS), key_id=key_id)
    tampered = {**query, "request_id": "req-2", "ciphertexts": ["zz-not-hex"]}
    answers = custodian.comparisons_answer_many(queries=[("req-1", query), ("req-2", tampered), ("req-3", query)])
    assert set(answers["req-1"]) >= {"request_id"}
    assert used() == len(THRESHOLDS)
    assert "error" in answers["req-2"]  # malformed ciphertexts
    assert "error" in answers["req-3"]  # no budget was ever granted (and the query names req-1)
    refused = AuditEntry.objects.filter(action="custodian.refuse").values_list("target_id", flat=True)
    assert sorted(refused) == ["req-2", "req-3"]
    assert AuditEntry.objects.filter(action="custodian.answer", target_id="req-1").count() == 1
    # A redelivered chunk gets the same answer for req-1 and spends nothing more.
    again = custodian.comparisons_answer_many(queries=[("req-1", query)])
    assert again["req-1"] == answers["req-1"]
    assert used() == len(THRESHOLDS)
