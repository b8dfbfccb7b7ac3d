from __future__ import annotations

import gmpy2
import phe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securecompute import fast_encryptor
from securecompute.encryption import (
    FastEncryptor,
    _fixed_base_rows,
    best_window_bits,
    obfuscator_exponent_bits,
)
from securecompute.errors import KeyTooShortError, PlaintextOverflowError
from securecompute.private import decrypt_int
from tests.securecompute.conftest import KeyPair

small_ints = st.integers(min_value=-(2**64), max_value=2**64)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(small_ints, min_size=1, max_size=8))
def test_phe_decrypts_our_ciphertexts_at_2048(keys_2048: KeyPair, values: list[int]) -> None:
    public_key, private_key = keys_2048
    encrypted = fast_encryptor(public_key).encrypt_vector(values)
    assert all(isinstance(c, phe.EncryptedNumber) and c.exponent == 0 for c in encrypted)
    assert [private_key.decrypt(c) for c in encrypted] == values


@settings(max_examples=15, deadline=None)
@given(value=small_ints)
def test_phe_decrypts_our_ciphertexts_at_3072(keys_3072: KeyPair, value: int) -> None:
    public_key, private_key = keys_3072
    assert private_key.decrypt(fast_encryptor(public_key).encrypt(value)) == value


@settings(max_examples=15, deadline=None)
@given(value=small_ints)
def test_we_decrypt_phe_ciphertexts(keys_2048: KeyPair, value: int) -> None:
    public_key, private_key = keys_2048
    assert decrypt_int(private_key, public_key.encrypt(value)) == value


def test_the_whole_encoding_range_round_trips(keys_2048: KeyPair) -> None:
    public_key, private_key = keys_2048
    encryptor = fast_encryptor(public_key)
    for value in [0, 1, -1, public_key.max_int, -public_key.max_int]:
        assert private_key.decrypt(encryptor.encrypt(value)) == value
        assert decrypt_int(private_key, encryptor.encrypt(value)) == value
    with pytest.raises(PlaintextOverflowError):
        encryptor.encrypt(public_key.max_int + 1)
    with pytest.raises(TypeError):
        encryptor.encrypt(1.5)  # type: ignore[arg-type]


def test_phe_arithmetic_works_on_our_ciphertexts(keys_2048: KeyPair) -> None:
    public_key, private_key = keys_2048
    a, b = fast_encryptor(public_key).encrypt_vector([20, -7])
    assert private_key.decrypt(a + b) == 13
    assert private_key.decrypt(a * -3 + public_key.encrypt(5)) == -55


def test_ciphertexts_are_fresh_and_flagged_obfuscated(keys_2048: KeyPair) -> None:
    encryptor = fast_encryptor(keys_2048[0])
    first, second = encryptor.encrypt(42), encryptor.encrypt(42)
    assert first.ciphertext(be_secure=False) != second.ciphertext(be_secure=False)
    # Flagged, phe does not add its own (slow) obfuscator when asked for a secure ciphertext.
    assert first.ciphertext() == first.ciphertext(be_secure=False)


def test_obfuscators_are_encryptions_of_zero(keys_2048: KeyPair) -> None:
    public_key, private_key = keys_2048
    obfuscator = int(fast_encryptor(public_key).obfuscator())
    assert private_key.raw_decrypt(obfuscator) == 0


def test_exponent_is_twice_the_security_level_and_the_window_is_tuned() -> None:
    assert obfuscator_exponent_bits(2048) == 224
    assert obfuscator_exponent_bits(3072) == 256
    assert best_window_bits(256, 3000) == 9
    assert best_window_bits(224, 3000) == 9
    assert best_window_bits(256, 10) < 9


def test_fixed_base_rows_hold_the_right_powers() -> None:
    modulus = gmpy2.mpz(2**127 - 1)
    base = gmpy2.mpz(3)
    rows = _fixed_base_rows(base, modulus, exponent_bits=20, window_bits=6)
    assert [len(row) for row in rows] == [64, 64, 64, 4]
    for index, row in enumerate(rows):
        for digit in [0, 1, 2, len(row) - 1]:
            assert row[digit] == gmpy2.powmod(base, digit << (6 * index), modulus)


def test_one_encryptor_per_key_is_cached(keys_2048: KeyPair) -> None:
    public_key = keys_2048[0]
    assert fast_encryptor(public_key) is fast_encryptor(phe.PaillierPublicKey(public_key.n))


def test_refuses_short_keys() -> None:
    public_key, _ = phe.generate_paillier_keypair(n_length=1024)
    with pytest.raises(KeyTooShortError):
        FastEncryptor(public_key)


def test_works_with_keys_generated_by_phe() -> None:
    """phe's own keys are not DJN-admissible moduli; the encryptor needs none of that to be correct."""
    public_key, private_key = phe.generate_paillier_keypair(n_length=2048)
    encryptor = FastEncryptor(public_key, expected_encryptions=10)
    assert [private_key.decrypt(c) for c in encryptor.encrypt_vector([0, 9, -9])] == [0, 9, -9]
