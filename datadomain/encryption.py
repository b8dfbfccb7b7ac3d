"""The one place where the data domain encrypts feature values.

Everything that turns plaintext features into ciphertexts (request-time extraction, bulk precompute)
calls :func:`encrypt_vector`, which uses securecompute's fixed-base Damgard-Jurik-Nielsen encryptor.
"""

from __future__ import annotations

from collections.abc import Sequence

import phe

from securecompute import fast_encryptor
from securecompute.keys import key_id

# What the store holds per feature: (raw Paillier ciphertext, phe exponent).
Stored = dict[str, tuple[int, int]]


def encrypt_vector(public_key: phe.PaillierPublicKey, values: Sequence[int]) -> list[phe.EncryptedNumber]:
    """Paillier ciphertexts of integer ``values`` under ``public_key``, each with fresh randomness."""
    return fast_encryptor(public_key).encrypt_vector(int(value) for value in values)


def key_fingerprint(public_key: phe.PaillierPublicKey) -> str:
    """The key id (securecompute.keys.key_id) that stored ciphertexts and custodian keys are filed under."""
    return key_id(public_key)


def to_pair(number: phe.EncryptedNumber) -> tuple[int, int]:
    return number.ciphertext(be_secure=False), number.exponent


def from_pair(public_key: phe.PaillierPublicKey, pair: tuple[int, int]) -> phe.EncryptedNumber:
    return phe.EncryptedNumber(public_key, pair[0], pair[1])


def pack(stored: Stored) -> tuple[list[str], list[int], bytes]:
    """Names, exponents and the ciphertexts as one fixed-width big-endian byte string.

    Ciphertexts are uniformly random below n^2: JSON or decimal text would only make them larger and
    slower to write (CPython's int-to-decimal conversion is quadratic)."""
    names = list(stored)
    width = max(((pair[0].bit_length() + 7) // 8 for pair in stored.values()), default=1)
    blob = b"".join(stored[name][0].to_bytes(width, "big") for name in names)
    return names, [stored[name][1] for name in names], blob


def unpack(names: list[str], exponents: list[int], blob: bytes) -> Stored:
    if not names:
        return {}
    width = len(blob) // len(names)
    return {
        name: (int.from_bytes(blob[index * width : (index + 1) * width], "big"), exponents[index])
        for index, name in enumerate(names)
    }
