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
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gmpy2
import phe
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from securecompute.binding import (
    BindingParams,
    GrantTerms,
    combination_coefficients,
    multi_power,
    open_groups,
    open_packed,
    pack_key,
    random_signs,
    slot_signs,
)
from securecompute.errors import (
    CorruptKeyFileError,
    InsecureKeyFileError,
    KekFormatError,
    KeyTooShortError,
    ProtocolError,
    SecureComputeError,
    WrongKekError,
)
from securecompute.keys import check_key_bits, key_id, parse_hex
from securecompute.paillier import check_ciphertext, modulus, public_key_for_modulus, raw_ciphertext
from securecompute.protocol import ComparisonAnswer, ComparisonQuery, PackedQuery

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
    """Seal ``private_key`` into ``path`` with mode 0600, atomically (:func:`write_sealed_file`)."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    write_sealed_file(target, seal_private_key(private_key, kek))


def write_sealed_file(path: str | os.PathLike[str], sealed: bytes) -> None:
    """Write (or replace) a sealed key file atomically: a temporary file created with mode 0600 in the same
    directory, fsync, rename over ``path``, fsync of the directory. A crash leaves the old file or the new
    one, never a mix; a leftover ``.*.tmp`` file holds only sealed bytes."""
    target = Path(path)
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
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


def read_sealed_file(path: str | os.PathLike[str]) -> bytes:
    """The content of a sealed key file; refuses a file others can read or write."""
    target = Path(path)
    mode = stat.S_IMODE(target.stat().st_mode)
    if mode & 0o077:
        raise InsecureKeyFileError(f"{target} has mode {mode:04o}; a sealed private key must be 0600")
    return target.read_bytes()


def load_sealed_private_key(path: str | os.PathLike[str], kek: bytes) -> phe.PaillierPrivateKey:
    """Load a key written by :func:`write_sealed_private_key`; refuses a file others can read."""
    return unseal_private_key(read_sealed_file(path), kek)


def is_sealed_under(sealed: bytes, kek: bytes) -> bool:
    """Whether ``sealed`` names ``kek`` as its KEK (by ``kek_check``, without decrypting anything)."""
    return hmac.compare_digest(str(_parse_sealed(sealed)["kek_check"]), _kek_check(_check_kek(kek)))


def reseal_private_key(sealed: bytes, old_kek: bytes, new_kek: bytes) -> bytes | None:
    """``sealed`` re-sealed from ``old_kek`` to ``new_kek``, or None when it already is under ``new_kek``.

    Nothing is written here. The new form is verified by unsealing it with ``new_kek``; a file that only
    claims the new KEK must still open with it. A key sealed under neither raises :class:`WrongKekError`.
    """
    old_kek, new_kek = _check_kek(old_kek), _check_kek(new_kek)
    if hmac.compare_digest(old_kek, new_kek):
        raise KekFormatError("the new KEK is the current one")
    if is_sealed_under(sealed, new_kek):
        unseal_private_key(sealed, new_kek)
        return None
    private_key = unseal_private_key(sealed, old_kek)
    resealed = seal_private_key(private_key, new_kek)
    if unseal_private_key(resealed, new_kek) != private_key:
        raise CorruptKeyFileError("the re-sealed key does not open to the same key")  # never expected
    return resealed


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
    """Precomputed CRT values (Paillier 1999, Section 7), as gmpy2 integers; ``repr`` shows ``n`` alone.

    Side channels. A compromised scoring worker chooses the ciphertexts the custodian decrypts. Plain
    ``gmpy2.powmod`` (GMP's ``mpz_powm``) takes time and touches memory according to the secret exponent
    ``p - 1``, and reducing ``c`` modulo the secret ``p^2`` first is the step Brumley and Boneh's remote
    timing attack on RSA-CRT exploits (USENIX Security 2003). One decryption at 3072 bits (median of 7
    rounds of 20 on the build machine, two exponentiations modulo ``p^2`` and ``q^2``):

    =====================================================================  =======
    powmod on ``c mod p^2`` (before)                                        9.6 ms
    powmod, exponent blinded as ``p - 1 + k p (p - 1)``, ``k`` 64 bits      19.3 ms
    powmod_sec on ``c mod p^2``                                             14.0 ms
    powmod_sec on ``c`` itself (what we do)                                 14.5 ms
    powmod_sec with the blinded exponent                                    41.9 ms
    =====================================================================  =======

    Exponent blinding must add a multiple of the group order ``p (p - 1)``, so the exponent grows from
    ``|p|`` to ``2 |p| + 64`` bits and the cost doubles; it only stops an attacker averaging many
    decryptions under one fixed exponent, and leaves the variable-time reduction and the base-dependent
    table accesses in place. ``gmpy2.powmod_sec`` (GMP's ``mpz_powm_sec``, which the GMP manual says takes
    "the same time and [has] the same cache access patterns for any two same-size arguments") covers
    exponent, base and modulus for 1.5 times the cost, and given the ciphertext unreduced it also does the
    reduction modulo ``p^2`` itself, side-channel silently (``mpn_sec_powm`` reduces its base with
    ``mpn_sec_div_r``). That is the choice. Blinding on top (three times the cost again) would add protection
    against differential power analysis, which needs physical access to the custodian's machine.

    What stays variable-time works on values whose size is public except with negligible probability:
    ``L(x) = (x - 1) / p`` and the CRT recombination take time by limb count, which depends on a secret
    only when a top limb happens to be zero (about 2^-64 per value, not something a worker can steer
    without knowing ``p``).
    """

    n: Any
    p: Any = field(repr=False)
    q: Any = field(repr=False)
    psquare: Any = field(repr=False)
    qsquare: Any = field(repr=False)
    hp: Any = field(repr=False)
    hq: Any = field(repr=False)
    p_inverse: Any = field(repr=False)

    @classmethod
    def of(cls, private_key: phe.PaillierPrivateKey) -> _CrtKey:
        p, q = gmpy2.mpz(private_key.p), gmpy2.mpz(private_key.q)
        n = p * q
        psquare, qsquare = p * p, q * q
        hp = gmpy2.invert((gmpy2.powmod_sec(n + 1, p - 1, psquare) - 1) // p, p)
        hq = gmpy2.invert((gmpy2.powmod_sec(n + 1, q - 1, qsquare) - 1) // q, q)
        return cls(n, p, q, psquare, qsquare, hp, hq, gmpy2.invert(p, q))

    def decrypt_mod_p(self, ciphertext: int) -> int:
        """The plaintext modulo ``p`` alone, by one constant-time exponentiation: half a decryption.

        Enough for a tagged comparison query, whose honest plaintext is below ``2^(|n|/2 - 2) < p``
        (securecompute.binding sizes the packing so), and for a packed query, whose value plaintexts are
        below ``p`` and whose tags are only ever compared as residues modulo ``p``; sound for a dishonest
        query because the MAC checks hold modulo the prime ``p`` just as modulo ``n`` (see the binding
        module's docstring).
        """
        c = gmpy2.mpz(ciphertext)
        return int((gmpy2.powmod_sec(c, self.p - 1, self.psquare) - 1) // self.p * self.hp % self.p)

    def decrypt(self, ciphertext: int) -> int:
        """The plaintext residue in ``[0, n)`` of ``0 < ciphertext < n^2``, by constant-time exponentiations."""
        c = gmpy2.mpz(ciphertext)
        # c itself, not c mod p^2: powmod_sec reduces it without a secret-dependent timing (class docstring).
        mp = (gmpy2.powmod_sec(c, self.p - 1, self.psquare) - 1) // self.p * self.hp % self.p
        mq = (gmpy2.powmod_sec(c, self.q - 1, self.qsquare) - 1) // self.q * self.hq % self.q
        return int(mp + (mq - mp) * self.p_inverse % self.q * self.p)


# The CRT values of the keys in use, least recently used first: the active key and those being rotated out.
# The custodian drops a retired key's entry (forget_private_key); the bound is for keys it never names.
_CRT_KEYS_HELD = 4
_crt_keys: OrderedDict[int, _CrtKey] = OrderedDict()
_crt_lock = threading.Lock()


def _crt_key(private_key: phe.PaillierPrivateKey) -> _CrtKey:
    n = modulus(private_key.public_key)
    with _crt_lock:
        key = _crt_keys.get(n)
        if key is None:
            key = _crt_keys[n] = _CrtKey.of(private_key)
            while len(_crt_keys) > _CRT_KEYS_HELD:
                _crt_keys.popitem(last=False)
        else:
            _crt_keys.move_to_end(n)
        return key


def forget_private_key(n: int) -> bool:
    """Drop what this module keeps of the key with modulus ``n`` (its factors and the values derived from
    them); True when it kept something. Python cannot overwrite an integer in place, so "dropped" means
    unreachable: the memory goes back to the allocator and is reused, as for any freed object."""
    with _crt_lock:
        return _crt_keys.pop(int(n), None) is not None


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


@dataclass(frozen=True)
class Verdict:
    """The custodian's answer to one query, and for its own records whether the query passed every check
    (``reason`` names the first that failed). Only ``answer`` ever leaves the custodian."""

    answer: ComparisonAnswer
    valid: bool
    reason: str = ""


def answer_comparisons(private_key: phe.PaillierPrivateKey, query: ComparisonQuery, terms: GrantTerms) -> Verdict:
    """Decrypt a tagged, blinded comparison query and return only the signs of its slots.

    The query must match what the grant pinned (request, key, number of comparisons, slot width, layout)
    and every packed plaintext must carry the request's MAC (:func:`securecompute.binding.open_packed`). A
    query that fails any check is answered all the same, with ``terms.comparisons`` random signs: the
    worker cannot tell a failed check from an unlucky tier by the answer's shape, and nothing here raises
    on a value that depends on a plaintext. Every well-formed ciphertext is decrypted before the tag is
    judged, so the work does not depend on the outcome either. Spending the grant is the caller's job,
    before calling this.
    """
    count = terms.comparisons
    public_key = private_key.public_key
    n = modulus(public_key)
    reason = _shape_refusal(query, terms, key_id(public_key), n)
    params = terms.params(n.bit_length())
    layout = params.layout()
    if reason:
        return Verdict(ComparisonAnswer(terms.request_id, tuple(random_signs(count))), valid=False, reason=reason)
    crt = _crt_key(private_key)
    pairs = zip(query.ciphertexts, layout, strict=True)
    opened = [open_packed(crt.decrypt_mod_p(ciphertext), terms.mac_key, params, size) for ciphertext, size in pairs]
    if any(packed is None for packed in opened):
        return Verdict(ComparisonAnswer(terms.request_id, tuple(random_signs(count))), valid=False, reason="bad_tag")
    positive: list[bool] = []
    for packed, size in zip(opened, layout, strict=True):
        assert packed is not None
        positive.extend(slot_signs(packed, size, terms.slot_bits))
    return Verdict(ComparisonAnswer(terms.request_id, tuple(positive)), valid=True)


@dataclass(frozen=True)
class PackedVerdict:
    """The custodian's answers to a packed query, one per request, and whether the query passed every
    check (``reason`` names the first that failed). Only the answers ever leave the custodian."""

    answers: dict[str, ComparisonAnswer]
    valid: bool
    reason: str = ""


def answer_packed(
    private_key: phe.PaillierPrivateKey, query: PackedQuery, terms: Sequence[GrantTerms]
) -> PackedVerdict:
    """Decrypt a packed query (securecompute.binding, "Packing several requests") and return each request's
    signs. ``terms`` are the grants of ``query.request_ids``, in that order.

    Every value plaintext must lie in range, and one decryption checks every tag at once: with fresh random
    ``rho_t``, ``Dec(prod_t tag_t^rho_t) = sum_t rho_t sum_i a'_i P_i (mod p)``. A query that fails any
    check is answered with random signs for every request it names. Every well-formed ciphertext is
    decrypted before anything is judged, so the work does not depend on the outcome.
    """
    public_key = private_key.public_key
    n = modulus(public_key)
    reason = _pack_shape_refusal(query, terms, key_id(public_key), n)
    if reason:
        return PackedVerdict(_coins(terms), valid=False, reason=reason)
    params = terms[0].params(n.bit_length())
    crt = _crt_key(private_key)
    opened = [open_groups(crt.decrypt_mod_p(value), params, count) for value, count in _pack_layout(query, params)]
    rho = combination_coefficients(len(query.tags))
    combined = crt.decrypt_mod_p(int(multi_power(list(zip(query.tags, rho, strict=True)), gmpy2.mpz(n) ** 2)))
    if any(groups is None for groups in opened):
        return PackedVerdict(_coins(terms), valid=False, reason="out_of_range")
    slots = [group for groups in opened for group in groups or []]
    keys = [pack_key(grant.mac_key, params) for grant in terms]
    expected = 0
    for t, coefficient in enumerate(rho):
        members = range(t * params.groups, min((t + 1) * params.groups, len(slots)))
        expected += coefficient * sum(keys[i] * slots[i] for i in members)
    if combined != expected % crt.p:
        return PackedVerdict(_coins(terms), valid=False, reason="bad_tag")
    answers = {
        grant.request_id: ComparisonAnswer(
            grant.request_id, tuple(slot_signs(group, grant.comparisons, params.slot_bits))
        )
        for grant, group in zip(terms, slots, strict=True)
    }
    return PackedVerdict(answers, valid=True)


def _pack_layout(query: PackedQuery, params: BindingParams) -> list[tuple[int, int]]:
    """Each value ciphertext with the number of requests it holds."""
    total = len(query.request_ids)
    counts = [min(params.groups, total - start) for start in range(0, total, params.groups)]
    return list(zip(query.values, counts, strict=True))


def _coins(terms: Sequence[GrantTerms]) -> dict[str, ComparisonAnswer]:
    return {
        grant.request_id: ComparisonAnswer(grant.request_id, tuple(random_signs(grant.comparisons))) for grant in terms
    }


def _pack_shape_refusal(query: PackedQuery, terms: Sequence[GrantTerms], held_key_id: str, n: int) -> str:
    """Why the packed query does not fit its grants, judged on its public shape alone ("" when it fits)."""
    ids = query.request_ids
    if len(set(ids)) != len(ids) or [grant.request_id for grant in terms] != list(ids):
        return "wrong_request"
    if query.key_id != held_key_id or any(grant.key_id != held_key_id for grant in terms):
        return "wrong_key"
    shapes = {(grant.comparisons, grant.slot_bits) for grant in terms}
    if shapes != {(query.comparisons, query.slot_bits)}:
        return "wrong_shape"
    try:
        params = terms[0].params(n.bit_length())
    except ProtocolError:
        return "wrong_shape"
    groups = -(-len(ids) // params.groups) if params.groups > 1 else 0
    if not groups or len(query.values) != groups or len(query.tags) != groups:
        return "wrong_shape"
    for ciphertext in (*query.values, *query.tags):
        try:
            check_ciphertext(ciphertext, n)
        except SecureComputeError:
            return "bad_ciphertext"
    return ""


def _shape_refusal(query: ComparisonQuery, terms: GrantTerms, held_key_id: str, n: int) -> str:
    """Why the query does not fit the grant, judged on its public shape alone ("" when it fits)."""
    if query.request_id != terms.request_id:
        return "wrong_request"
    if query.key_id != terms.key_id or held_key_id != terms.key_id:
        return "wrong_key"
    if query.comparisons != terms.comparisons or query.slot_bits != terms.slot_bits:
        return "wrong_shape"
    try:
        layout = terms.params(n.bit_length()).layout()
    except ProtocolError:
        return "wrong_shape"
    if len(query.ciphertexts) != len(layout):
        return "wrong_shape"
    for ciphertext in query.ciphertexts:
        try:
            check_ciphertext(ciphertext, n)
        except SecureComputeError:
            return "bad_ciphertext"
    return ""
