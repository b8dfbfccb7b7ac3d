from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securecompute import encrypted_score, fast_encryptor, score_bound
from securecompute.errors import WrongKeyError
from securecompute.private import decrypt_int
from tests.securecompute.conftest import KeyPair

vectors = st.integers(min_value=0, max_value=30).flatmap(
    lambda size: st.tuples(
        st.lists(st.integers(min_value=-1000, max_value=1000), min_size=size, max_size=size),
        st.lists(st.integers(min_value=-100, max_value=100), min_size=size, max_size=size),
    )
)


@settings(max_examples=40, deadline=None)
@given(case=vectors)
def test_score_equals_the_plaintext_dot_product(keys_2048: KeyPair, case: tuple[list[int], list[int]]) -> None:
    public_key, private_key = keys_2048
    features, weights = case
    score = encrypted_score(public_key, fast_encryptor(public_key).encrypt_vector(features), weights)
    assert private_key.decrypt(score) == sum(w * x for w, x in zip(weights, features, strict=True))


@settings(max_examples=10, deadline=None)
@given(case=vectors)
def test_scores_phe_ciphertexts_at_3072(keys_3072: KeyPair, case: tuple[list[int], list[int]]) -> None:
    public_key, private_key = keys_3072
    features, weights = case
    score = encrypted_score(public_key, [public_key.encrypt(x) for x in features], weights)
    assert decrypt_int(private_key, score) == sum(w * x for w, x in zip(weights, features, strict=True))


def test_large_weights_take_the_powmod_path(keys_2048: KeyPair) -> None:
    public_key, private_key = keys_2048
    features = [3, -2, 5, 7]
    weights = [10_000, -1, 0, 2**40]
    score = encrypted_score(public_key, fast_encryptor(public_key).encrypt_vector(features), weights)
    assert private_key.decrypt(score) == 30_000 + 2 + 7 * 2**40


def test_refuses_mismatched_lengths_other_keys_and_float_encodings(keys_2048: KeyPair, other_keys: KeyPair) -> None:
    public_key = keys_2048[0]
    encrypted = fast_encryptor(public_key).encrypt_vector([1, 2])
    with pytest.raises(ValueError, match="2 ciphertexts but 1 weights"):
        encrypted_score(public_key, encrypted, [1])
    with pytest.raises(WrongKeyError):
        encrypted_score(other_keys[0], encrypted, [1, 1])
    with pytest.raises(ValueError, match="exponent"):
        encrypted_score(public_key, [public_key.encrypt(0.5)], [1])
    with pytest.raises(TypeError):
        encrypted_score(public_key, encrypted, [1, 0.5])  # type: ignore[list-item]


def test_score_bound_sums_absolute_weights_times_feature_bounds() -> None:
    assert score_bound([2, -3, 0], 1) == 5
    assert score_bound([2, -3], [4, 10]) == 38
    with pytest.raises(ValueError, match="feature bounds"):
        score_bound([1, 2], [1])
