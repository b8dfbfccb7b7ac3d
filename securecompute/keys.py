"""Paillier key generation, key ids and the versioned JSON form of public keys.

Key sizes follow NIST SP 800-57 Part 1 Rev. 5, Section 5.6.1.1, Table 2: a 2048-bit modulus gives 112
bits of security, 3072 bits give 128. Anything below 2048 bits is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from typing import Any, TypedDict

import gmpy2
import phe

from securecompute.errors import KeyTooShortError, SecureComputeError
from securecompute.paillier import modulus, public_key_for_modulus

MIN_KEY_BITS = 2048
DEFAULT_KEY_BITS = 3072
MAX_KEY_BITS = 16384
PUBLIC_KEY_FORMAT = "securecompute.paillier-public-key"
PUBLIC_KEY_VERSION = 1
# Rounds passed to mpz_probab_prime_p: GMP runs Baillie-PSW, then (reps - 24) Miller-Rabin rounds with
# random bases; no composite passing Baillie-PSW is known.
_PRIMALITY_REPS = 40
_HEX = re.compile(r"[0-9a-fA-F]{1,8192}")


class PublicKeyJSON(TypedDict):
    format: str
    v: int
    key_id: str
    bits: int
    n: str


def security_bits(modulus_bits: int) -> int:
    """Comparable symmetric security strength of an integer-factorisation modulus (SP 800-57, Table 2)."""
    check_key_bits(modulus_bits)
    if modulus_bits >= 15360:
        return 256
    if modulus_bits >= 7680:
        return 192
    if modulus_bits >= 3072:
        return 128
    return 112


def check_key_bits(bits: int) -> None:
    if bits < MIN_KEY_BITS:
        raise KeyTooShortError(
            f"a {bits}-bit Paillier modulus is too short: at least {MIN_KEY_BITS} bits are required "
            f"(112-bit security, NIST SP 800-57 Part 1); {DEFAULT_KEY_BITS} bits is the default"
        )


def generate_keypair(bits: int = DEFAULT_KEY_BITS) -> tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]:
    """A fresh Paillier key pair whose modulus has exactly ``bits`` bits.

    The modulus is admissible in the sense of Damgard-Jurik-Nielsen (2010, Section 4.2): ``p = q = 3 mod 4``
    and ``gcd(p - 1, q - 1) = 2``, so that ``-x^2`` generates a large subgroup for the fast encryptor.
    ``|p - q|`` is kept far above ``2^(bits/2 - 100)`` (FIPS 186-5, A.1.3) against Fermat factoring.
    """
    check_key_bits(bits)
    if bits % 2 or bits > MAX_KEY_BITS:
        raise ValueError(f"key size must be an even number of bits up to {MAX_KEY_BITS}, got {bits}")
    half = bits // 2
    p = _random_prime(half)
    while True:
        q = _random_prime(half)
        if gmpy2.gcd(p - 1, q - 1) == 2 and abs(p - q).bit_length() > half - 100:
            break
    n = p * q
    assert n.bit_length() == bits
    public_key = public_key_for_modulus(int(n))
    return public_key, phe.PaillierPrivateKey(public_key, int(p), int(q))


def _random_prime(bits: int) -> Any:
    """A random prime of exactly ``bits`` bits, ``= 3 mod 4``, with its two top bits set.

    Setting both top bits makes the product of two such primes exactly ``2 * bits`` long.
    """
    while True:
        candidate = gmpy2.mpz(secrets.randbits(bits)) | (3 << (bits - 2)) | 3
        while candidate.bit_length() == bits:
            if gmpy2.is_prime(candidate, _PRIMALITY_REPS):
                return candidate
            candidate += 4


def key_id(public_key: phe.PaillierPublicKey) -> str:
    """Fingerprint of a public key: the first 16 hex digits of SHA-256 over ``n`` (big-endian bytes)."""
    n = modulus(public_key)
    return hashlib.sha256(n.to_bytes((n.bit_length() + 7) // 8, "big")).hexdigest()[:16]


def public_key_to_dict(public_key: phe.PaillierPublicKey) -> PublicKeyJSON:
    n = modulus(public_key)
    return {
        "format": PUBLIC_KEY_FORMAT,
        "v": PUBLIC_KEY_VERSION,
        "key_id": key_id(public_key),
        "bits": n.bit_length(),
        "n": format(n, "x"),
    }


def public_key_to_json(public_key: phe.PaillierPublicKey) -> str:
    """``{"format", "v": 1, "key_id", "bits", "n": hex}`` as a JSON string."""
    return json.dumps(public_key_to_dict(public_key), sort_keys=True)


def public_key_from_json(data: str | Mapping[str, Any]) -> phe.PaillierPublicKey:
    """Parse :func:`public_key_to_json` output; refuses other versions, short keys and a wrong key id."""
    document = json.loads(data) if isinstance(data, str) else data
    if not isinstance(document, Mapping) or document.get("format") != PUBLIC_KEY_FORMAT:
        raise SecureComputeError("not a securecompute Paillier public key document")
    if document.get("v") != PUBLIC_KEY_VERSION:
        raise SecureComputeError(f"unsupported public key version {document.get('v')!r}")
    n = parse_hex(document.get("n"), "n")
    if n % 2 == 0:
        raise SecureComputeError("invalid public key: the modulus is even")
    check_key_bits(n.bit_length())
    public_key = public_key_for_modulus(n)
    if document.get("key_id") != key_id(public_key):
        raise SecureComputeError("public key document's key_id does not match its modulus")
    return public_key


def parse_hex(value: object, name: str) -> int:
    """A non-negative integer from plain hex digits (how big integers travel in JSON)."""
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise SecureComputeError(f"{name} must be a non-empty string of hex digits")
    return int(value, 16)
