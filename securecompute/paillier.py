"""Typed access to ``phe`` objects (the library ships no type hints) and the checks every side shares.

``phe.EncryptedNumber`` keeps a private "already obfuscated" flag; a ciphertext that is not flagged gets
a fresh ``r^n`` obfuscator (a full-length modular exponentiation) whenever ``ciphertext()`` is called with
its default ``be_secure=True``. Ciphertexts from :class:`securecompute.encryption.FastEncryptor` carry a
fresh obfuscator already, so they are flagged; everything else is left as phe would leave it.
"""

from __future__ import annotations

import gmpy2
import phe

from securecompute.errors import InvalidCiphertextError, WrongKeyError

_OBFUSCATED_FLAG = "_EncryptedNumber__is_obfuscated"


def modulus(public_key: phe.PaillierPublicKey) -> int:
    return int(public_key.n)


def public_key_for_modulus(n: int) -> phe.PaillierPublicKey:
    return phe.PaillierPublicKey(int(n))


def encrypted_number(public_key: phe.PaillierPublicKey, ciphertext: int, *, obfuscated: bool) -> phe.EncryptedNumber:
    """Wrap a raw ciphertext (an integer encryption, exponent 0) as a ``phe.EncryptedNumber``."""
    value = phe.EncryptedNumber(public_key, int(ciphertext), 0)
    if obfuscated:
        setattr(value, _OBFUSCATED_FLAG, True)
    return value


def raw_ciphertext(value: phe.EncryptedNumber, public_key: phe.PaillierPublicKey | None = None) -> int:
    """The ciphertext of an integer encryption; refuses other keys and non-integer (float) encodings."""
    if not isinstance(value, phe.EncryptedNumber):
        raise TypeError(f"expected a phe.EncryptedNumber, got {type(value).__name__}")
    if public_key is not None and value.public_key != public_key:
        raise WrongKeyError("the ciphertext was encrypted under another public key")
    if value.exponent != 0:
        raise ValueError(f"only integer encryptions (exponent 0) are supported, got exponent {value.exponent}")
    return int(value.ciphertext(be_secure=False))


def check_ciphertext(ciphertext: int, n: int) -> None:
    """Raise :class:`InvalidCiphertextError` unless ``0 < c < n^2`` and ``gcd(c, n) == 1``.

    A ciphertext sharing a factor with ``n`` is never produced by an honest party (it would factor ``n``);
    refusing it keeps a decryption oracle from ever touching such values.
    """
    if not 0 < ciphertext < n * n:
        raise InvalidCiphertextError("ciphertext out of range: it must satisfy 0 < c < n^2")
    if gmpy2.gcd(ciphertext, n) != 1:
        raise InvalidCiphertextError("ciphertext shares a factor with the modulus")
