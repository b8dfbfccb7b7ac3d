"""Operations that need the Paillier private key: sealing it at rest, decrypting, and the custodian's
side of the blinded comparison protocol.

An import-linter ``protected`` contract (.importlinter) lets only ``datadomain.custodian`` import this
module, so no scoring worker, view or task can reach a private key even by accident. Nothing here reads
the environment or settings: the caller passes the key encryption key (KEK) in.

Sealed key file (JSON, mode 0600)::

    {"format": "securecompute.sealed-paillier-key", "v": 1, "alg": "AES-256-GCM", "key_id": ...,
     "bits": ..., "kek_check": hex, "nonce": base64, "ciphertext": base64}

The ciphertext is AES-256-GCM (NIST SP 800-38D) over ``{"p": hex, "q": hex}`` with a fresh 96-bit nonce;
every header field is bound as associated data. ``kek_check`` is HMAC-SHA256(KEK, fixed label), truncated
to 128 bits: it tells a wrong KEK apart from a damaged file without revealing anything about the KEK.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gmpy2
import phe
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from securecompute.errors import (
    BudgetExceededError,
    CorruptKeyFileError,
    InsecureKeyFileError,
    KekFormatError,
    KeyTooShortError,
    ProtocolError,
    SecureComputeError,
    WrongKekError,
    WrongKeyError,
)
from securecompute.keys import check_key_bits, key_id, parse_hex
from securecompute.paillier import check_ciphertext, modulus, public_key_for_modulus, raw_ciphertext
from securecompute.protocol import ComparisonAnswer, ComparisonQuery, slot_layout, unpack_slots

SEALED_FORMAT = "securecompute.sealed-paillier-key"
SEALED_VERSION = 1
SEALED_ALGORITHM = "AES-256-GCM"
KEK_BYTES = 32
_KEK_CHECK_LABEL = b"securecompute sealed-key kek check v1"
_HEADER_FIELDS = ("format", "v", "alg", "key_id", "bits", "kek_check")


# Key encryption keys -------------------------------------------------------------------------------------


def new_kek() -> str:
    """A fresh KEK spelled as 64 hex digits, suitable for ``CUSTODIAN_KEK`` or a key file."""
    return secrets.token_hex(KEK_BYTES)


def kek_from_env_value(value: str) -> bytes:
    """The 32-byte KEK from a ``CUSTODIAN_KEK`` value: 64 hex digits or base64 (standard or URL-safe).

    Passphrases are refused on purpose: a KEK must be 256 random bits, not something a person chose.
    """
    text = value.strip()
    if len(text) == 2 * KEK_BYTES:
        try:
            return _check_kek(bytes.fromhex(text))
        except ValueError:
            pass
    try:
        decoded = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) == KEK_BYTES:
        return _check_kek(decoded)
    raise KekFormatError(
        f"CUSTODIAN_KEK must be {KEK_BYTES} random bytes written as {2 * KEK_BYTES} hex digits or base64 "
        f"(got {len(text)} characters); generate one with `python -c 'import secrets; print(secrets.token_hex(32))'`"
    )


def kek_from_key_file(content: bytes) -> bytes:
    """The KEK from a key file's content: 32 raw bytes, or the text forms :func:`kek_from_env_value` takes."""
    if len(content) == KEK_BYTES:
        return _check_kek(content)
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError:
        raise KekFormatError(f"a KEK file must hold {KEK_BYTES} raw bytes, 64 hex digits or base64") from None
    return kek_from_env_value(text)


def _check_kek(kek: bytes) -> bytes:
    if not isinstance(kek, bytes) or len(kek) != KEK_BYTES:
        raise KekFormatError(f"a KEK must be exactly {KEK_BYTES} bytes")
    if len(set(kek)) == 1:
        raise KekFormatError("the KEK is a single repeated byte; use random bytes")
    return kek


# Sealing -------------------------------------------------------------------------------------------------


def seal_private_key(private_key: phe.PaillierPrivateKey, kek: bytes) -> bytes:
    """The sealed form of ``private_key`` (see the module docstring); refuses keys under 2048 bits."""
    check_key_bits(modulus(private_key.public_key).bit_length())
    return _seal(int(private_key.p), int(private_key.q), _check_kek(kek))


def _seal(p: int, q: int, kek: bytes) -> bytes:
    public_key = public_key_for_modulus(p * q)
    header: dict[str, Any] = {
        "format": SEALED_FORMAT,
        "v": SEALED_VERSION,
        "alg": SEALED_ALGORITHM,
        "key_id": key_id(public_key),
        "bits": (p * q).bit_length(),
        "kek_check": _kek_check(kek),
    }
    nonce = secrets.token_bytes(12)
    plaintext = json.dumps({"p": format(p, "x"), "q": format(q, "x")}).encode()
    ciphertext = AESGCM(kek).encrypt(nonce, plaintext, _associated_data(header))
    document = {
        **header,
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }
    return json.dumps(document, sort_keys=True, indent=1).encode() + b"\n"


def unseal_private_key(sealed: bytes, kek: bytes) -> phe.PaillierPrivateKey:
    """Inverse of :func:`seal_private_key`, with a distinct error for each way it can fail."""
    kek = _check_kek(kek)
    document = _parse_sealed(sealed)
    if not hmac.compare_digest(str(document["kek_check"]), _kek_check(kek)):
        raise WrongKekError("the private key was sealed under a different KEK (check CUSTODIAN_KEK)")
    try:
        plaintext = AESGCM(kek).decrypt(
            _b64(document["nonce"]), _b64(document["ciphertext"]), _associated_data(document)
        )
    except InvalidTag:
        raise CorruptKeyFileError("the sealed key failed authentication: the file was altered or damaged") from None
    try:
        factors = json.loads(plaintext)
        p, q = parse_hex(factors["p"], "p"), parse_hex(factors["q"], "q")
    except (ValueError, KeyError, TypeError, SecureComputeError):
        raise CorruptKeyFileError("the sealed key's content is malformed") from None
    bits = (p * q).bit_length()
    if bits < 2048:
        raise KeyTooShortError(f"the sealed key is {bits} bits; at least 2048 are required: rotate the key pair")
    public_key = public_key_for_modulus(p * q)
    if key_id(public_key) != document["key_id"] or p == q or not (gmpy2.is_prime(p) and gmpy2.is_prime(q)):
        raise CorruptKeyFileError("the sealed key's factors do not match its key id")
    return phe.PaillierPrivateKey(public_key, p, q)


def write_sealed_private_key(
    path: str | os.PathLike[str], private_key: phe.PaillierPrivateKey, kek: bytes, *, overwrite: bool = False
) -> None:
    """Seal ``private_key`` into ``path`` with mode 0600, atomically (temporary file, fsync, rename)."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    sealed = seal_private_key(private_key, kek)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(sealed)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def load_sealed_private_key(path: str | os.PathLike[str], kek: bytes) -> phe.PaillierPrivateKey:
    """Load a key written by :func:`write_sealed_private_key`; refuses a file others can read."""
    target = Path(path)
    mode = stat.S_IMODE(target.stat().st_mode)
    if mode & 0o077:
        raise InsecureKeyFileError(f"{target} has mode {mode:04o}; a sealed private key must be 0600")
    return unseal_private_key(target.read_bytes(), kek)


def _parse_sealed(sealed: bytes) -> dict[str, Any]:
    try:
        document = json.loads(sealed)
    except (ValueError, UnicodeDecodeError):
        raise CorruptKeyFileError("the sealed key file is not valid JSON (truncated or damaged)") from None
    if not isinstance(document, dict) or document.get("format") != SEALED_FORMAT:
        raise CorruptKeyFileError("not a sealed securecompute private key")
    if document.get("v") != SEALED_VERSION or document.get("alg") != SEALED_ALGORITHM:
        raise CorruptKeyFileError(f"unsupported sealed key version {document.get('v')!r}")
    missing = [name for name in (*_HEADER_FIELDS, "nonce", "ciphertext") if name not in document]
    if missing:
        raise CorruptKeyFileError(f"the sealed key file lacks {', '.join(missing)}")
    return document


def _associated_data(header: dict[str, Any]) -> bytes:
    return json.dumps({name: header[name] for name in _HEADER_FIELDS}, sort_keys=True).encode()


def _kek_check(kek: bytes) -> str:
    return hmac.new(kek, _KEK_CHECK_LABEL, hashlib.sha256).hexdigest()[:32]


def _b64(value: object) -> bytes:
    if not isinstance(value, str):
        raise CorruptKeyFileError("the sealed key file has a malformed field")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CorruptKeyFileError("the sealed key file has a malformed base64 field") from None


# Decryption ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CrtKey:
    """Precomputed CRT values (Paillier 1999, Section 7), as gmpy2 integers."""

    n: Any
    p: Any
    q: Any
    psquare: Any
    qsquare: Any
    hp: Any
    hq: Any
    p_inverse: Any

    @classmethod
    def of(cls, private_key: phe.PaillierPrivateKey) -> _CrtKey:
        p, q = gmpy2.mpz(private_key.p), gmpy2.mpz(private_key.q)
        n = p * q
        psquare, qsquare = p * p, q * q
        hp = gmpy2.invert((gmpy2.powmod(n + 1, p - 1, psquare) - 1) // p, p)
        hq = gmpy2.invert((gmpy2.powmod(n + 1, q - 1, qsquare) - 1) // q, q)
        return cls(n, p, q, psquare, qsquare, hp, hq, gmpy2.invert(p, q))

    def decrypt(self, ciphertext: int) -> int:
        """The plaintext residue in ``[0, n)``."""
        c = gmpy2.mpz(ciphertext)
        mp = (gmpy2.powmod(c % self.psquare, self.p - 1, self.psquare) - 1) // self.p * self.hp % self.p
        mq = (gmpy2.powmod(c % self.qsquare, self.q - 1, self.qsquare) - 1) // self.q * self.hq % self.q
        return int(mp + (mq - mp) * self.p_inverse % self.q * self.p)


_crt_keys: dict[int, _CrtKey] = {}
_crt_lock = threading.Lock()


def _crt_key(private_key: phe.PaillierPrivateKey) -> _CrtKey:
    n = modulus(private_key.public_key)
    with _crt_lock:
        key = _crt_keys.get(n)
        if key is None:
            key = _crt_keys[n] = _CrtKey.of(private_key)
        return key


def decrypt_int(private_key: phe.PaillierPrivateKey, value: phe.EncryptedNumber) -> int:
    """The signed integer in ``value`` (phe's encoding: residues above ``n - max_int`` are negative)."""
    public_key = private_key.public_key
    ciphertext = raw_ciphertext(value, public_key)
    n = modulus(public_key)
    check_ciphertext(ciphertext, n)
    residue = _crt_key(private_key).decrypt(ciphertext)
    max_int = int(public_key.max_int)
    if residue <= max_int:
        return residue
    if residue >= n - max_int:
        return residue - n
    raise OverflowError("the decrypted value overflowed the encoding range")


def decrypt_vector(private_key: phe.PaillierPrivateKey, values: Sequence[phe.EncryptedNumber]) -> list[int]:
    return [decrypt_int(private_key, value) for value in values]


# The custodian's side of the comparison protocol ---------------------------------------------------------


def answer_comparisons(
    private_key: phe.PaillierPrivateKey, query: ComparisonQuery, budget_remaining: int
) -> ComparisonAnswer:
    """Decrypt a blinded comparison query and return only the signs of its slots.

    Refuses (before any decryption) a query for another key, one asking for more comparisons than
    ``budget_remaining`` (the caller charges the request's budget by ``query.comparisons`` afterwards),
    a malformed layout and any ciphertext outside ``(0, n^2)`` or sharing a factor with ``n``. After
    decrypting (once per packed ciphertext, one in practice) it refuses plaintexts with bits above the
    declared slots or with a zero slot, so a dishonest worker cannot turn the custodian into a general
    decryption oracle: each comparison tells it at most one bit (a sign) about values it holds ciphertexts
    of, which is why the budget, and not the blinding, is what bounds a dishonest worker.

    Both CRT halves are always computed. Decrypting modulo ``p`` alone would halve the cost for packed
    plaintexts (they are far below ``p``), but the range check would then rest on ``m mod p`` instead of
    ``m`` and the answer would depend on ``p`` for dishonest plaintexts; we keep the textbook decryption.
    """
    if query.comparisons > budget_remaining:
        raise BudgetExceededError(
            f"the query asks for {query.comparisons} comparisons but the request has {max(budget_remaining, 0)} left"
        )
    public_key = private_key.public_key
    if query.key_id != key_id(public_key):
        raise WrongKeyError(f"the query is for key {query.key_id}, this custodian holds {key_id(public_key)}")
    n = modulus(public_key)
    layout = slot_layout(n.bit_length(), query.slot_bits, query.comparisons)
    if len(query.ciphertexts) != len(layout):
        raise ProtocolError(f"expected {len(layout)} packed ciphertexts, got {len(query.ciphertexts)}")
    for ciphertext in query.ciphertexts:
        check_ciphertext(ciphertext, n)
    crt = _crt_key(private_key)
    positive: list[bool] = []
    for ciphertext, count in zip(query.ciphertexts, layout, strict=True):
        positive.extend(value > 0 for value in unpack_slots(crt.decrypt(ciphertext), count, query.slot_bits))
    return ComparisonAnswer(request_id=query.request_id, positive=tuple(positive))
