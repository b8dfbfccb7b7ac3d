"""The fast encryptor's ciphertexts show the Jacobi symbol ``(c | n)`` the way phe's do: +1 or -1 like a
fair coin (securecompute.encryption, "The Jacobi symbol").

Secrets take no seed, so these tests are made reliable by their thresholds instead. Each test below rejects
at level ``ALPHA = 1e-7`` with an exact test (binomial or Fisher, no normal approximation, so the level
holds for the sample size used). Four tests depend on fresh randomness, so a correct encryptor fails this
module with probability below 4e-7, while the old construction (``h_s^a`` with ``h = -x^2``, every symbol
+1) gives p-values near 1e-90.
"""

from __future__ import annotations

import secrets
from fractions import Fraction
from math import comb

import gmpy2
import phe
import pytest

from securecompute import fast_encryptor
from securecompute.encryption import _random_base
from securecompute.paillier import modulus, raw_ciphertext
from tests.securecompute.conftest import KeyPair

SAMPLES = 300
ALPHA = 1e-7


def fair_coin_p_value(plus: int, trials: int) -> float:
    """Exact two-sided binomial test of ``plus`` successes in ``trials`` fair coin flips: the probability
    of a count at least as far from ``trials / 2`` as the one observed."""
    distance = abs(2 * plus - trials)
    extreme = sum(comb(trials, k) for k in range(trials + 1) if abs(2 * k - trials) >= distance)
    return float(Fraction(extreme, 2**trials))


def same_coin_p_value(plus_a: int, trials_a: int, plus_b: int, trials_b: int) -> float:
    """Fisher's exact two-sided test that two samples come from the same coin (whatever its bias): the
    hypergeometric probability of tables no more likely than the observed one, in exact integers."""
    total = plus_a + plus_b

    def weight(x: int) -> int:
        return comb(trials_a, x) * comb(trials_b, total - x)

    observed = weight(plus_a)
    tables = range(max(0, total - trials_b), min(trials_a, total) + 1)
    extreme = sum(weight(x) for x in tables if weight(x) <= observed)
    return float(Fraction(extreme, comb(trials_a + trials_b, total)))


def plus_count(ciphertexts: list[int], n: int) -> int:
    symbols = [gmpy2.jacobi(c, n) for c in ciphertexts]
    assert set(symbols) <= {-1, 1}  # every ciphertext is a unit
    return symbols.count(1)


@pytest.fixture(scope="module")
def symbols(keys_2048: KeyPair) -> dict[str, int]:
    """How many of SAMPLES ciphertexts have symbol +1: ours, phe's and the old construction's."""
    public_key = keys_2048[0]
    n = modulus(public_key)
    values = [secrets.randbelow(2**32) - 2**31 for _ in range(SAMPLES)]
    ours = [raw_ciphertext(value) for value in fast_encryptor(public_key).encrypt_vector(values)]
    theirs = [raw_ciphertext(public_key.encrypt(value)) for value in values]
    base = _random_base(gmpy2.mpz(n), gmpy2.mpz(n) ** 2)
    old = [int(gmpy2.powmod(base, secrets.randbits(224), n * n)) for _ in range(SAMPLES)]
    return {"ours": plus_count(ours, n), "phe": plus_count(theirs, n), "old": plus_count(old, n)}


def test_the_statistics_are_exact_and_reject_a_constant_symbol() -> None:
    assert fair_coin_p_value(150, 300) == 1.0
    assert fair_coin_p_value(0, 4) == fair_coin_p_value(4, 4) == 2 / 16
    assert fair_coin_p_value(SAMPLES, SAMPLES) < ALPHA  # all +1: what the old encryptor produced
    assert same_coin_p_value(150, 300, 150, 300) == 1.0
    assert same_coin_p_value(SAMPLES, SAMPLES, 150, 300) < ALPHA
    # The threshold still leaves room for honest samples: a deviation of 2.5 standard deviations passes.
    assert fair_coin_p_value(150 + 22, 300) > ALPHA


def test_our_symbols_are_a_fair_coin(symbols: dict[str, int]) -> None:
    assert fair_coin_p_value(symbols["ours"], SAMPLES) >= ALPHA, symbols


def test_phe_symbols_are_a_fair_coin(symbols: dict[str, int]) -> None:
    assert fair_coin_p_value(symbols["phe"], SAMPLES) >= ALPHA, symbols


def test_our_symbols_and_phes_come_from_the_same_coin(symbols: dict[str, int]) -> None:
    assert same_coin_p_value(symbols["ours"], SAMPLES, symbols["phe"], SAMPLES) >= ALPHA, symbols


def test_the_old_construction_fails_the_same_tests(keys_2048: KeyPair, symbols: dict[str, int]) -> None:
    n = modulus(keys_2048[0])
    assert gmpy2.jacobi(-1, n) == 1  # p = q = 3 mod 4: h = -x^2 always has symbol +1
    assert symbols["old"] == SAMPLES
    assert fair_coin_p_value(symbols["old"], SAMPLES) < ALPHA
    assert same_coin_p_value(symbols["old"], SAMPLES, symbols["phe"], SAMPLES) < ALPHA


def test_the_two_first_rows_have_opposite_symbols(keys_2048: KeyPair) -> None:
    """The fair bit picks between row 0 and row 0 times ``y_s``: every entry's symbol flips."""
    encryptor = fast_encryptor(keys_2048[0])
    n = modulus(keys_2048[0])
    plain, flipped = encryptor._first_rows
    for digit in [0, 1, 2, len(plain) - 1]:
        assert gmpy2.jacobi(flipped[digit], n) == -gmpy2.jacobi(plain[digit], n)


def test_phe_keys_with_n_3_mod_4_also_get_fair_symbols() -> None:
    """For phe's own keys ``(-1 | n)`` may be -1; the fair bit keeps the symbol uniform either way."""
    public_key, _ = phe.generate_paillier_keypair(n_length=2048)
    n = modulus(public_key)
    encryptor = fast_encryptor(public_key)
    plus = plus_count([int(encryptor.obfuscator()) for _ in range(SAMPLES)], n)
    assert fair_coin_p_value(plus, SAMPLES) >= ALPHA
