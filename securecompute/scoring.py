"""Encrypted linear scoring: ``Enc(sum w_i x_i) = prod Enc(x_i)^(w_i) mod n^2`` for integer weights."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import gmpy2
import phe

from securecompute.paillier import encrypted_number, modulus, raw_ciphertext

# Below this many modular multiplications the running-product method beats one powmod per weight.
_RUNNING_PRODUCT_LIMIT = 64


def encrypted_score(
    public_key: phe.PaillierPublicKey, ciphertexts: Sequence[phe.EncryptedNumber], weights: Sequence[int]
) -> phe.EncryptedNumber:
    """``Enc(sum_i weights[i] * x_i)`` from ``Enc(x_i)``; weights may be negative or zero.

    Works on ciphertexts from phe and from :func:`securecompute.fast_encryptor` alike (integer encodings,
    exponent 0). The result is a deterministic function of its inputs, not re-randomised: it stays with
    the scoring worker, and :func:`securecompute.tiering.build_tier_query` re-randomises what it sends on.
    """
    if len(ciphertexts) != len(weights):
        raise ValueError(f"{len(ciphertexts)} ciphertexts but {len(weights)} weights")
    nsquare = gmpy2.mpz(modulus(public_key)) ** 2
    by_weight: dict[int, Any] = defaultdict(lambda: gmpy2.mpz(1))
    for value, weight in zip(ciphertexts, weights, strict=True):
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise TypeError(f"weights must be integers, got {type(weight).__name__}")
        ciphertext = raw_ciphertext(value, public_key)
        if weight:
            by_weight[weight] = by_weight[weight] * ciphertext % nsquare
    positive = _power_product({w: c for w, c in by_weight.items() if w > 0}, nsquare)
    negative = _power_product({-w: c for w, c in by_weight.items() if w < 0}, nsquare)
    score = positive if negative == 1 else positive * gmpy2.invert(negative, nsquare) % nsquare
    return encrypted_number(public_key, int(score), obfuscated=False)


def _power_product(bases: dict[int, Any], nsquare: Any) -> Any:
    """``prod base^exponent mod n^2`` over ``{exponent: base}`` with positive exponents."""
    if not bases:
        return gmpy2.mpz(1)
    largest = max(bases)
    if 2 * largest <= _RUNNING_PRODUCT_LIMIT:
        # Summation by parts: walking the exponents down, `running` is the product of every base whose
        # exponent is >= e, and multiplying it into `result` once per step raises each base to its exponent.
        result = running = gmpy2.mpz(1)
        for exponent in range(largest, 0, -1):
            if exponent in bases:
                running = running * bases[exponent] % nsquare
            result = result * running % nsquare
        return result
    result = gmpy2.mpz(1)
    for exponent, base in bases.items():
        result = result * gmpy2.powmod(base, exponent, nsquare) % nsquare
    return result


def score_bound(weights: Sequence[int], feature_bounds: Sequence[int] | int) -> int:
    """An upper bound on ``|sum w_i x_i|`` when every ``|x_i| <= feature_bounds[i]`` (or one common bound).

    Tiering needs it to size the packed comparison slots (:func:`securecompute.tiering.build_tier_query`).
    """
    bounds = [feature_bounds] * len(weights) if isinstance(feature_bounds, int) else list(feature_bounds)
    if len(bounds) != len(weights):
        raise ValueError(f"{len(weights)} weights but {len(bounds)} feature bounds")
    if any(bound < 0 for bound in bounds):
        raise ValueError("feature bounds must be non-negative")
    return sum(abs(weight) * bound for weight, bound in zip(weights, bounds, strict=True))
