from __future__ import annotations

import json

import gmpy2
import phe
import pytest

from securecompute.errors import KeyTooShortError, SecureComputeError
from securecompute.keys import (
    generate_keypair,
    key_id,
    public_key_from_json,
    public_key_to_json,
    security_bits,
)
from tests.securecompute.conftest import KeyPair


def test_generated_keys_have_the_exact_size_and_an_admissible_modulus(keys_2048: KeyPair, keys_3072: KeyPair) -> None:
    for bits, (public_key, private_key) in [(2048, keys_2048), (3072, keys_3072)]:
        p, q = private_key.p, private_key.q
        assert public_key.n.bit_length() == bits
        assert p * q == public_key.n
        assert p % 4 == 3
        assert q % 4 == 3
        assert gmpy2.gcd(p - 1, q - 1) == 2
        assert gmpy2.is_prime(p)
        assert gmpy2.is_prime(q)


@pytest.mark.parametrize("bits", [512, 1024, 2046])
def test_refuses_keys_below_2048_bits_with_a_clear_message(bits: int) -> None:
    with pytest.raises(KeyTooShortError, match="at least 2048 bits"):
        generate_keypair(bits)


def test_security_levels_follow_sp_800_57() -> None:
    assert security_bits(2048) == 112
    assert security_bits(3072) == 128
    assert security_bits(4096) == 128
    assert security_bits(7680) == 192


def test_key_id_is_a_stable_16_hex_fingerprint(keys_2048: KeyPair, other_keys: KeyPair) -> None:
    public_key = keys_2048[0]
    assert key_id(public_key) == key_id(phe.PaillierPublicKey(public_key.n))
    assert len(key_id(public_key)) == 16
    int(key_id(public_key), 16)
    assert key_id(public_key) != key_id(other_keys[0])


def test_public_key_json_round_trips_with_a_version(keys_3072: KeyPair) -> None:
    public_key = keys_3072[0]
    text = public_key_to_json(public_key)
    document = json.loads(text)
    assert document["v"] == 1
    assert document["bits"] == 3072
    assert document["key_id"] == key_id(public_key)
    assert public_key_from_json(text) == public_key
    assert public_key_from_json(document) == public_key


def test_public_key_json_refuses_tampering_versions_and_short_keys(keys_2048: KeyPair) -> None:
    document = json.loads(public_key_to_json(keys_2048[0]))
    with pytest.raises(SecureComputeError, match="key_id"):
        public_key_from_json({**document, "key_id": "0" * 16})
    with pytest.raises(SecureComputeError, match="version"):
        public_key_from_json({**document, "v": 2})
    with pytest.raises(SecureComputeError, match="hex"):
        public_key_from_json({**document, "n": "0x" + document["n"]})
    short, _ = phe.generate_paillier_keypair(n_length=1024)
    with pytest.raises(KeyTooShortError):
        public_key_from_json({**document, "n": format(short.n, "x"), "key_id": key_id(short), "bits": 1024})
