from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securecompute import ciphertexts_from_json, ciphertexts_to_json, fast_encryptor, query_from_json
from securecompute.binding import binding_params, slot_values
from securecompute.errors import InvalidCiphertextError, ProtocolError, SecureComputeError, WrongKeyError
from securecompute.protocol import ComparisonQuery, pack_slots
from tests.securecompute.conftest import KeyPair


def test_ciphertext_vectors_round_trip_through_json(keys_2048: KeyPair) -> None:
    public_key, private_key = keys_2048
    encrypted = fast_encryptor(public_key).encrypt_vector([3, -1, 0])
    text = ciphertexts_to_json(encrypted)
    document = json.loads(text)
    assert document["v"] == 1
    assert all(isinstance(c, str) for c in document["ciphertexts"])
    restored = ciphertexts_from_json(text, public_key)
    assert [private_key.decrypt(c) for c in restored] == [3, -1, 0]
    assert ciphertexts_from_json(document, public_key)[0].ciphertext(False) == encrypted[0].ciphertext(False)


def test_ciphertext_vectors_are_checked(keys_2048: KeyPair, other_keys: KeyPair) -> None:
    public_key = keys_2048[0]
    document = json.loads(ciphertexts_to_json(fast_encryptor(public_key).encrypt_vector([1])))
    with pytest.raises(WrongKeyError):
        ciphertexts_from_json(document, other_keys[0])
    with pytest.raises(InvalidCiphertextError):
        ciphertexts_from_json({**document, "ciphertexts": ["0"]}, public_key)
    with pytest.raises(SecureComputeError, match="hex"):
        ciphertexts_from_json({**document, "ciphertexts": ["-1f"]}, public_key)
    with pytest.raises(ProtocolError, match="version"):
        ciphertexts_from_json({**document, "v": 9}, public_key)
    with pytest.raises(ValueError, match="empty"):
        ciphertexts_to_json([])


def test_query_json_is_validated() -> None:
    query = ComparisonQuery(key_id="k", request_id="r", comparisons=2, slot_bits=80, ciphertexts=(2**3000 + 1,))
    assert query_from_json(json.dumps(query.to_dict())) == query
    for broken in [{"comparisons": "2"}, {"ciphertexts": "ff"}, {"v": 0}, {"slot_bits": True}]:
        with pytest.raises(ProtocolError):
            query_from_json({**query.to_dict(), **broken})
    with pytest.raises(ProtocolError):
        query_from_json("[1, 2]")


@settings(max_examples=60, deadline=None)
@given(
    slot_bits=st.integers(min_value=8, max_value=200),
    data=st.data(),
)
def test_slots_pack_and_unpack(slot_bits: int, data: st.DataObject) -> None:
    limit = 2 ** (slot_bits - 1) - 1
    values = data.draw(st.lists(st.integers(min_value=-limit, max_value=limit).filter(bool), min_size=1, max_size=5))
    assert slot_values(pack_slots(values, slot_bits), len(values), slot_bits) == values


def test_slot_layout_packs_as_many_as_fit_with_their_tag() -> None:
    # Z = P + 2^L a P with a of L + 128 bits: 3L + 132 bits must fit in |n|/2 (below the prime p).
    assert binding_params(3072, 111, 3).layout() == [3]
    assert binding_params(3072, 111, 12).layout() == [4, 4, 4]
    assert binding_params(2048, 200, 3).layout() == [1, 1, 1]
    assert binding_params(2048, 100, 5).layout() == [2, 2, 1]
    for slot_bits, comparisons in [(7, 1), (300, 1), (80, 0), (80, 65)]:
        with pytest.raises(ProtocolError):
            binding_params(2048, slot_bits, comparisons)
