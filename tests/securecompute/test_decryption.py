"""The custodian's CRT decryption: correct against phe, constant-time exponentiations, and nothing kept of a
key after :func:`securecompute.private.forget_private_key`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securecompute import fast_encryptor, private
from securecompute.paillier import modulus
from securecompute.private import _crt_key, decrypt_int, forget_private_key
from tests.securecompute.conftest import KeyPair

small_ints = st.integers(min_value=-(2**64), max_value=2**64)


@settings(max_examples=25, deadline=None)
@given(value=small_ints)
def test_decrypts_what_phe_encrypts_as_phe_does(keys_2048: KeyPair, value: int) -> None:
    public_key, private_key = keys_2048
    ciphertext = public_key.encrypt(value)
    assert decrypt_int(private_key, ciphertext) == private_key.decrypt(ciphertext) == value


@settings(max_examples=40, deadline=None)
@given(raw=st.integers(min_value=1, max_value=2**4096))
def test_any_ciphertext_a_worker_could_send_decrypts_to_phes_residue(keys_2048: KeyPair, raw: int) -> None:
    """Chosen ciphertexts, unreduced and far above ``p^2``: the same residue as phe's ``raw_decrypt``."""
    _, private_key = keys_2048
    n = modulus(private_key.public_key)
    ciphertext = raw % (n * n)
    if ciphertext == 0 or gmpy2.gcd(ciphertext, n) != 1:
        return
    assert _crt_key(private_key).decrypt(ciphertext) == private_key.raw_decrypt(ciphertext)


@settings(max_examples=5, deadline=None)
@given(value=small_ints)
def test_decrypts_at_3072_bits(keys_3072: KeyPair, value: int) -> None:
    public_key, private_key = keys_3072
    assert decrypt_int(private_key, fast_encryptor(public_key).encrypt(value)) == value


def test_exponentiations_are_constant_time_on_the_unreduced_ciphertext(
    keys_2048: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every exponentiation with a secret exponent goes through ``powmod_sec``, on ``c`` itself: the
    reduction modulo ``p^2`` happens inside GMP's side-channel-silent code, not in a variable-time ``%``."""
    public_key, private_key = keys_2048
    crt = _crt_key(private_key)
    ciphertext = int(fast_encryptor(public_key).encrypt_residue(1234))
    calls: list[tuple[Any, Any, Any]] = []
    constant_time = gmpy2.powmod_sec

    def spy(base: Any, exponent: Any, mod: Any) -> Any:
        calls.append((base, exponent, mod))
        return constant_time(base, exponent, mod)

    def variable_time(*args: Any) -> Any:
        raise AssertionError("variable-time powmod used with a secret exponent")

    monkeypatch.setattr(gmpy2, "powmod_sec", spy)
    monkeypatch.setattr(gmpy2, "powmod", variable_time)
    assert crt.decrypt(ciphertext) == 1234
    p, q = gmpy2.mpz(private_key.p), gmpy2.mpz(private_key.q)
    assert calls == [(ciphertext, p - 1, p * p), (ciphertext, q - 1, q * q)]


def test_the_crt_key_never_shows_its_factors(keys_2048: KeyPair) -> None:
    _, private_key = keys_2048
    shown = repr(_crt_key(private_key))
    assert str(private_key.p) not in shown
    assert str(private_key.q) not in shown
    assert str(modulus(private_key.public_key)) in shown


@pytest.fixture
def empty_cache() -> Iterator[None]:
    with private._crt_lock:
        held = dict(private._crt_keys)
        private._crt_keys.clear()
    yield
    with private._crt_lock:
        private._crt_keys.clear()
        private._crt_keys.update(held)


@pytest.mark.usefixtures("empty_cache")
def test_forgetting_a_key_drops_its_factors(keys_2048: KeyPair, other_keys: KeyPair) -> None:
    public_key, private_key = keys_2048
    decrypt_int(private_key, fast_encryptor(public_key).encrypt(5))
    decrypt_int(other_keys[1], fast_encryptor(other_keys[0]).encrypt(5))
    n = modulus(public_key)
    assert n in private._crt_keys
    assert forget_private_key(n) is True
    assert n not in private._crt_keys
    assert list(private._crt_keys) == [modulus(other_keys[0])]
    assert forget_private_key(n) is False  # nothing left to forget
    assert decrypt_int(private_key, fast_encryptor(public_key).encrypt(-5)) == -5  # a key still held reloads


@pytest.mark.usefixtures("empty_cache")
def test_the_cache_holds_a_bounded_number_of_keys(
    keys_2048: KeyPair, other_keys: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(private, "_CRT_KEYS_HELD", 1)
    _crt_key(keys_2048[1])
    _crt_key(other_keys[1])
    assert list(private._crt_keys) == [modulus(other_keys[0])]
