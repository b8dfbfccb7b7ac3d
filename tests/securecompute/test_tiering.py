from __future__ import annotations

import dataclasses
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securecompute import (
    answer_from_json,
    answer_to_json,
    encrypted_score,
    fast_encryptor,
    query_from_json,
    query_to_json,
    score_bound,
    tier_index_from_answer,
    tier_index_plain,
)
from securecompute.binding import GrantTerms
from securecompute.errors import ProtocolError
from securecompute.private import answer_comparisons
from securecompute.protocol import ComparisonAnswer, ComparisonQuery, pack_slots
from securecompute.tiering import TieringState, plan_blinding, tiering_params
from tests.securecompute.conftest import KeyPair, authorise, honest_query


@st.composite
def manuals(draw: st.DrawFn) -> tuple[list[int], list[int], list[int]]:
    size = draw(st.integers(min_value=1, max_value=20))
    features = draw(st.lists(st.integers(min_value=0, max_value=5), min_size=size, max_size=size))
    weights = draw(st.lists(st.integers(min_value=-6, max_value=6), min_size=size, max_size=size))
    thresholds = sorted(draw(st.sets(st.integers(min_value=-20, max_value=40), min_size=1, max_size=6)))
    return features, weights, thresholds


def run_protocol(keys: KeyPair, features: list[int], weights: list[int], thresholds: list[int]) -> int:
    """The whole flow, with every message through its JSON form as Celery would carry it."""
    public_key, private_key = keys
    score = encrypted_score(public_key, fast_encryptor(public_key).encrypt_vector(features), weights)
    # The bound must really hold (a score beyond it overflows its slot): features here go up to 99.
    bound = score_bound(weights, max([5, *(abs(x) for x in features)]))
    grant = authorise(public_key, score, thresholds, score_bound=bound, request_id="req-1")
    query, state = honest_query(public_key, score, thresholds, grant)
    verdict = answer_comparisons(private_key, query_from_json(query_to_json(query)), grant.terms)
    assert verdict.valid, verdict.reason
    restored = TieringState.from_dict(json.loads(json.dumps(state.to_dict())))
    return tier_index_from_answer(restored, answer_from_json(answer_to_json(verdict.answer)))


@settings(max_examples=30, deadline=None)
@given(manual=manuals())
def test_tier_equals_the_plaintext_evaluation_at_2048(
    keys_2048: KeyPair, manual: tuple[list[int], list[int], list[int]]
) -> None:
    features, weights, thresholds = manual
    plain = sum(w * x for w, x in zip(weights, features, strict=True))
    assert run_protocol(keys_2048, features, weights, thresholds) == tier_index_plain(plain, thresholds)


@settings(max_examples=20, deadline=None)
@given(manual=manuals())
def test_tier_equals_the_plaintext_evaluation_at_3072(
    keys_3072: KeyPair, manual: tuple[list[int], list[int], list[int]]
) -> None:
    features, weights, thresholds = manual
    plain = sum(w * x for w, x in zip(weights, features, strict=True))
    assert run_protocol(keys_3072, features, weights, thresholds) == tier_index_plain(plain, thresholds)


@pytest.mark.parametrize(("score", "tier"), [(-5, 0), (1, 0), (2, 1), (3, 1), (4, 2), (5, 2), (6, 3), (99, 3)])
def test_max_score_is_inclusive(keys_2048: KeyPair, score: int, tier: int) -> None:
    # charlson-acci: A 0-1, B 2-3, C 4-5, D >= 6, so the thresholds are the max_scores 1, 3, 5.
    assert run_protocol(keys_2048, [score], [1], [1, 3, 5]) == tier
    assert tier_index_plain(score, [1, 3, 5]) == tier


def test_the_default_bound_and_overflowing_slots_split_over_several_ciphertexts(keys_2048: KeyPair) -> None:
    public_key, private_key = keys_2048
    score = fast_encryptor(public_key).encrypt(-(2**100))
    thresholds = [-(2**140), 0, 2**140]
    grant = authorise(public_key, score, thresholds, score_bound=2**150)
    assert grant.params.capacity == 1  # 256-bit slots and their tag: one per 2048-bit plaintext
    query, state = honest_query(public_key, score, thresholds, grant)
    assert len(query.ciphertexts) == 3
    assert tier_index_from_answer(state, answer_comparisons(private_key, query, grant.terms).answer) == 1
    seven = fast_encryptor(public_key).encrypt(7)
    grant = authorise(public_key, seven, [1, 3, 5], score_bound=9)
    query, state = honest_query(public_key, seven, [1, 3, 5], grant)
    assert len(query.ciphertexts) == 2  # 110-bit slots: two and their tag fit below a 1024-bit p
    assert tier_index_from_answer(state, answer_comparisons(private_key, query, grant.terms).answer) == 3


def test_query_carries_nothing_that_unshuffles_it(keys_2048: KeyPair) -> None:
    public_key = keys_2048[0]
    three = fast_encryptor(public_key).encrypt(3)
    query, _ = honest_query(public_key, three, [1, 3, 5], authorise(public_key, three, [1, 3, 5]))
    assert set(query.to_dict()) == {"v", "key_id", "request_id", "comparisons", "slot_bits", "ciphertexts"}


def refused(keys: KeyPair, query: ComparisonQuery, terms: GrantTerms) -> str:
    """Answer ``query`` and return why it failed a check, after checking the answer still has the shape
    of a real one (the worker cannot tell a refusal by it)."""
    verdict = answer_comparisons(keys[1], query, terms)
    assert not verdict.valid
    assert verdict.answer.request_id == terms.request_id
    assert len(verdict.answer.positive) == terms.comparisons
    return verdict.reason


def test_custodian_answers_a_query_that_does_not_fit_its_grant_with_random_signs(keys_2048: KeyPair) -> None:
    public_key = keys_2048[0]
    three = fast_encryptor(public_key).encrypt(3)
    grant = authorise(public_key, three, [1, 3, 5])
    query, _ = honest_query(public_key, three, [1, 3, 5], grant)
    assert refused(keys_2048, query, dataclasses.replace(grant.terms, comparisons=2)) == "wrong_shape"
    assert refused(keys_2048, dataclasses.replace(query, comparisons=2), grant.terms) == "wrong_shape"
    assert refused(keys_2048, dataclasses.replace(query, request_id="other"), grant.terms) == "wrong_request"
    assert refused(keys_2048, dataclasses.replace(query, slot_bits=4), grant.terms) == "wrong_shape"
    assert refused(keys_2048, dataclasses.replace(query, ciphertexts=query.ciphertexts * 2), grant.terms) == (
        "wrong_shape"
    )


def test_custodian_refuses_another_keys_query(keys_2048: KeyPair, other_keys: KeyPair) -> None:
    public_key = keys_2048[0]
    three = fast_encryptor(public_key).encrypt(3)
    grant = authorise(public_key, three, [1])
    query, _ = honest_query(public_key, three, [1], grant)
    assert refused(other_keys, query, grant.terms) == "wrong_key"


def test_custodian_validates_every_ciphertext(keys_2048: KeyPair) -> None:
    public_key, private_key = keys_2048
    three = fast_encryptor(public_key).encrypt(3)
    grant = authorise(public_key, three, [1, 3])
    query, _ = honest_query(public_key, three, [1, 3], grant)
    n = public_key.n
    for bad in [0, n * n, n * n + 5, private_key.p, private_key.q * 12345]:
        assert refused(keys_2048, dataclasses.replace(query, ciphertexts=(bad,)), grant.terms) == "bad_ciphertext"


def test_custodian_is_not_a_decryption_oracle(keys_2048: KeyPair) -> None:
    """Plaintexts without the request's tag (a raw feature ciphertext, one wider than the declared slots,
    one with a zero slot, an honest query on another score) all get random signs."""
    public_key = keys_2048[0]
    encryptor = fast_encryptor(public_key)
    three = encryptor.encrypt(3)
    grant = authorise(public_key, three, [1, 3])
    query, _ = honest_query(public_key, three, [1, 3], grant)
    slot_bits = query.slot_bits
    forged = [
        encryptor.encrypt_residue(1 << (2 * slot_bits)),
        encryptor.encrypt_residue(pack_slots([5], slot_bits) << slot_bits | 1 << (slot_bits - 1)),
        encryptor.encrypt_residue(1),
    ]
    for ciphertext in forged:
        assert refused(keys_2048, dataclasses.replace(query, ciphertexts=(ciphertext,)), grant.terms) == "bad_tag"
    other, _ = honest_query(public_key, encryptor.encrypt(4), [1, 3], dataclasses.replace(grant))
    assert refused(keys_2048, other, grant.terms) == "bad_tag"


def test_answer_only_holds_signs(keys_2048: KeyPair) -> None:
    public_key, private_key = keys_2048
    three = fast_encryptor(public_key).encrypt(3)
    grant = authorise(public_key, three, [1, 3, 5])
    query, _ = honest_query(public_key, three, [1, 3, 5], grant)
    answer = answer_comparisons(private_key, query, grant.terms).answer
    assert json.loads(answer_to_json(answer)) == {"v": 2, "request_id": "r", "positive": list(answer.positive)}


def test_worker_refuses_inconsistent_or_foreign_answers() -> None:
    state = TieringState(request_id="r", thresholds=(1, 3, 5), order=(2, 0, 1), flipped=(False, True, False))
    # Slot 0 compares with 5, slot 1 (flipped) with 1, slot 2 with 3.
    assert tier_index_from_answer(state, ComparisonAnswer("r", (False, False, True))) == 2
    assert tier_index_from_answer(state, ComparisonAnswer("r", (False, True, False))) == 0
    with pytest.raises(ProtocolError, match="not monotone"):
        tier_index_from_answer(state, ComparisonAnswer("r", (True, True, False)))
    with pytest.raises(ProtocolError, match="another request"):
        tier_index_from_answer(state, ComparisonAnswer("other", (False, False, True)))
    with pytest.raises(ProtocolError, match="expected 3 signs"):
        tier_index_from_answer(state, ComparisonAnswer("r", (False, False)))


def test_tiering_state_json_round_trips_and_is_validated() -> None:
    state = TieringState(request_id="r", thresholds=(1, 3, 5), order=(2, 0, 1), flipped=(False, True, False))
    assert TieringState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    with pytest.raises(ProtocolError):
        TieringState.from_dict({**state.to_dict(), "order": [0, 0, 1]})


def test_thresholds_are_validated() -> None:
    rng = random.Random(1)
    for thresholds, error in [([], ValueError), ([3, 1], ValueError), ([1, 1], ValueError), ([1.5], TypeError)]:
        with pytest.raises(error):
            tiering_params(2048, thresholds, score_bound=10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="score_bound"):
        tiering_params(2048, [1], score_bound=-1)
    with pytest.raises(ValueError, match="do not fit"):
        plan_blinding([1, 2], score_bound=10, params=tiering_params(2048, [1], score_bound=10), rng=rng)


def test_tiering_state_refuses_loose_types() -> None:
    state = TieringState(request_id="r", thresholds=(1, 3), order=(1, 0), flipped=(False, True)).to_dict()
    for broken in [{"flipped": [0, 1]}, {"request_id": ""}, {"thresholds": ["1", "3"]}, {"v": 1}]:
        with pytest.raises(ProtocolError):
            TieringState.from_dict({**state, **broken})
