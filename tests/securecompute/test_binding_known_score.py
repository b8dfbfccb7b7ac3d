"""Tag material from a score the data domain knows (fixed-base encryptions instead of a power of Enc(s))."""

from __future__ import annotations

import phe
from hypothesis import given, settings
from hypothesis import strategies as st

from securecompute import encrypted_score, fast_encryptor, score_bound, tier_index_from_answer, tier_index_plain
from securecompute.binding import GrantTerms, new_mac_key, tag_material, tag_material_for_known_score
from securecompute.keys import key_id
from securecompute.paillier import encrypted_number, modulus
from securecompute.private import answer_comparisons
from securecompute.tiering import build_tier_query, tiering_params
from tests.securecompute.conftest import KeyPair


def _decrypt_raw(private_key: phe.PaillierPrivateKey, public_key: phe.PaillierPublicKey, raw: int) -> int:
    return int(private_key.raw_decrypt(encrypted_number(public_key, raw, obfuscated=True).ciphertext(False)))


def _tier(
    keys: KeyPair, features: list[int], weights: list[int], thresholds: list[int], known: int
) -> tuple[int | None, bool]:
    """The tier the worker reads when the domain authorised the request with ``known`` as the score (None
    when the custodian found the tag invalid: its answer is then random coins, which need not even read as
    a tier), and whether the custodian found the query's tag valid."""
    public_key, private_key = keys
    encryptor = fast_encryptor(public_key)
    score = encrypted_score(public_key, [encryptor.encrypt(x) for x in features], weights)
    bound = score_bound(weights, 5)
    params = tiering_params(modulus(public_key).bit_length(), thresholds, score_bound=bound)
    mac_key = new_mac_key(params)
    tags = tag_material_for_known_score(public_key, known, mac_key, params)
    query, state = build_tier_query(
        public_key, score, tags, thresholds, request_id="r", params=params, score_bound=bound
    )
    terms = GrantTerms("r", key_id(public_key), len(thresholds), params.slot_bits, mac_key)
    verdict = answer_comparisons(private_key, query, terms)
    if not verdict.valid:
        return None, False
    return tier_index_from_answer(state, verdict.answer), True


def test_known_score_tags_encrypt_what_the_power_of_the_encrypted_score_does(keys_2048: KeyPair) -> None:
    public_key, private_key = keys_2048
    params = tiering_params(modulus(public_key).bit_length(), [1, 3, 5], score_bound=100)
    for value in (-7, 0, 1, 42):
        mac_key = new_mac_key(params)
        powered = tag_material(public_key, fast_encryptor(public_key).encrypt(value), mac_key, params)
        known = tag_material_for_known_score(public_key, value, mac_key, params)
        assert known.score_tag != powered.score_tag  # fresh randomness, not the same ciphertext
        for ours, theirs in ((known.score_tag, powered.score_tag), (known.unit_tag, powered.unit_tag)):
            assert _decrypt_raw(private_key, public_key, ours) == _decrypt_raw(private_key, public_key, theirs)


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=12).flatmap(
        lambda features: st.tuples(
            st.just(features),
            st.lists(st.integers(min_value=-6, max_value=6), min_size=len(features), max_size=len(features)),
            st.lists(st.integers(min_value=-20, max_value=40), min_size=1, max_size=5, unique=True).map(sorted),
        )
    )
)
def test_a_request_authorised_with_its_known_score_gets_the_plaintext_tier(
    keys_2048: KeyPair, manual: tuple[list[int], list[int], list[int]]
) -> None:
    features, weights, thresholds = manual
    score = sum(w * x for w, x in zip(weights, features, strict=True))
    tier, valid = _tier(keys_2048, features, weights, thresholds, score)
    assert valid
    assert tier == tier_index_plain(score, thresholds)


def test_a_known_score_that_is_not_the_vectors_fails_the_custodians_check(keys_2048: KeyPair) -> None:
    """Plaintext values out of step with the ciphertexts would be caught by the MAC (random signs and a
    misuse flag), not turned into a tier: that is why the domain writes both in one transaction."""
    features, weights, thresholds = [1, 0, 2], [2, 3, 1], [1, 3, 5]
    assert not _tier(keys_2048, features, weights, thresholds, 4 + 1)[1]
