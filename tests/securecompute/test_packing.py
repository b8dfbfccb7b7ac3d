"""Packed comparison queries (securecompute.binding, "Packing several requests"): the parameters meet the
argument's conditions for every shape, and a pack answers each request with the tier of its own score."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from securecompute import encrypted_score, fast_encryptor, private
from securecompute.binding import PACK_MARGIN_BITS, GrantTerms, binding_params, new_mac_key, tag_material
from securecompute.errors import ProtocolError
from securecompute.keys import key_id
from securecompute.tiering import PackItem, build_packed_query, tier_index_from_answer, tier_index_plain, tiering_params
from tests.securecompute.conftest import KeyPair


def test_every_shape_meets_the_packing_arguments_conditions() -> None:
    for bits in (2048, 3072):
        half = bits // 2
        for slot_bits in range(8, 400, 7):
            for comparisons in range(1, 65):
                try:
                    params = binding_params(bits, slot_bits, comparisons)
                except ProtocolError:
                    continue
                lam, group, value = params.mac_bits, params.group_bits, params.value_bits
                assert lam >= value + 128
                assert 2 * value + lam + 4 <= half  # the one-request form stays below p
                assert lam < half - 1  # keys stay distinct modulo p
                if params.groups > 1:
                    assert comparisons <= params.capacity
                    assert params.groups * group + 4 <= half  # value plaintexts below p
                    assert lam - 1 >= group + PACK_MARGIN_BITS
                    assert 2 * (lam - 1) >= params.groups * group + PACK_MARGIN_BITS


@settings(max_examples=6, deadline=None)
@given(
    st.lists(st.integers(min_value=-30, max_value=60), min_size=1, max_size=11),
    st.lists(st.integers(min_value=-10, max_value=50), min_size=1, max_size=4, unique=True).map(sorted),
)
def test_a_pack_answers_each_request_with_the_tier_of_its_own_score(
    keys_3072: KeyPair, scores: list[int], thresholds: list[int]
) -> None:
    public_key, private_key = keys_3072
    encryptor = fast_encryptor(public_key)
    bound = 64
    params = tiering_params(public_key.n.bit_length(), thresholds, score_bound=bound)
    items, terms = [], []
    for index, value in enumerate(scores):
        score = encrypted_score(public_key, [encryptor.encrypt(value)], [1])
        mac_key = new_mac_key(params)
        items.append(
            PackItem(f"r{index}", score, tag_material(public_key, score, mac_key, params), tuple(thresholds), bound)
        )
        terms.append(GrantTerms(f"r{index}", key_id(public_key), len(thresholds), params.slot_bits, mac_key))
    query, states = build_packed_query(public_key, items, params=params, pack_id="p", rng=random.Random(7))

    verdict = private.answer_packed(private_key, query, terms)

    assert verdict.valid, verdict.reason
    assert len(query.values) == -(-len(scores) // params.groups)
    read = [tier_index_from_answer(states[f"r{i}"], verdict.answers[f"r{i}"]) for i in range(len(scores))]
    assert read == [tier_index_plain(value, thresholds) for value in scores]
