"""Authenticated comparison queries: a linear MAC that binds what the custodian decrypts to one request.

Why
---
The custodian holds the private key and answers the scoring worker's blinded comparisons with signs. A
worker that could send any ciphertext would turn it into a decryption oracle: pack someone else's
encrypted indicators into one number and read them back a sign at a time. So the custodian must only
decrypt values that are an *affine function of the authorised request's own score*, whatever the worker
sends, and must not reveal by its behaviour whether a query passed its checks.

The binding (a linear MAC, checked on whole packed plaintexts)
--------------------------------------------------------------
Let ``k`` be the manual's number of thresholds, ``B`` the slot width, ``L = c * B`` the bits of one packed
plaintext (``c = min(k, capacity)`` slots) and ``lambda = L + 128``. When the data domain authorises a
request it draws a secret ``a`` uniform in ``[2^(lambda-1), 2^lambda)``, stores it in the request's grant
(readable by the custodian only) and hands the scoring worker, besides the encrypted features, the *tag
material* ``Enc(2^L a s)`` and ``Enc(2^L a)``, ``s`` being the score the domain itself derives from the
subject's stored vector and the approved manual's weights (:func:`tag_material`). The worker blinds as
before, ``P = A s + C`` for each packed plaintext (:mod:`securecompute.tiering`), and sends

    ``Z = (Enc(s) * Enc(2^L a s))^A * Enc(2^L a)^C * Enc(C) = Enc(P + 2^L a P)``.

The custodian decrypts ``Z`` and accepts it only when ``Z = P + 2^L T`` with ``0 <= P < 2^L`` and
``T = a P`` exactly (as integers; ``Z < 2^(3L + 128) < 2^(|n|/2 - 2)``, so nothing wraps)
(:func:`open_packed`). Because an honest ``Z`` is below the prime factor ``p``, the custodian decrypts
modulo ``p`` alone (half the work of a full CRT decryption).

Argument. Paillier is linearly homomorphic and semantically secure, so whatever the worker does it can
only produce encryptions of ``Z = alpha s + beta (2^L a s) + gamma (2^L a) + delta + sum_i eps_i y_i
(mod n)``, with coefficients it knows and ``y_i`` the plaintexts of any other ciphertexts it holds (other
subjects' features, other requests' tags, whose ``a`` are independent). Write ``Z = a U + V`` with
``U = 2^L (beta s + gamma)`` and ``V = alpha s + delta + sum eps_i y_i``; both are fixed before ``a`` is
used and independent of it (the worker sees ``a`` only under encryption). The check passes with some
``P`` iff ``a (2^L P - U) = V - P (mod n)``. If ``U = 2^L V`` (the honest form: ``P = V`` must then be an
affine function of ``s`` alone, since ``U`` is one), fine. Otherwise, for each of the ``2^L`` candidate
values of ``P`` at most one ``a`` modulo ``n`` satisfies the congruence (``2^L P - U`` is invertible unless
it is 0, which forces the honest form, or shares a factor with ``n``, which factors ``n``), so at most
``2^L`` of the ``2^(lambda - 1)`` possible keys pass: probability at most ``2^(L - lambda + 1) = 2^-127``
per packed plaintext. That is the "whole plaintext" argument, made to cover the packing: the union bound
runs over every plaintext value ``P`` the slots could hold, which is why ``lambda`` grows with ``L``.
Carries between slots need no argument of their own because the check is on the integer ``P`` as a whole,
not slot by slot.

Modulo ``p``. The custodian sees ``Z mod p``, so the congruence above holds modulo the prime ``p``
instead of ``n``; ``p`` being prime, the coefficient is invertible unless it is zero modulo ``p``, and keys
below ``2^lambda < p`` stay distinct modulo ``p``: the same ``2^-127`` bound. The degenerate case now reads
"the worker's extra terms vanish modulo ``p``", which for the small plaintexts it could guess (features,
scores) is the same as vanishing outright, and for large unknown ones (other requests' tag material)
would need their residues modulo a secret prime. What an honest-form query's own acceptance could reveal
(whether ``(A s + C) mod p`` falls in the slots' range) is a test that ``p`` lies in a window of width
``2^L`` next to a value the worker chose, hit with probability about ``2^(L - |n|/2)``: nothing usable.

Packing several requests (one decryption answers a chunk)
---------------------------------------------------------
A request's ``k`` slots take ``G = k B`` bits, so ``m = groups`` requests of one shape fit one value
plaintext below ``p`` (:class:`BindingParams`). The grants and tag material stay per request: request
``i`` has its own fresh key ``a_i`` and the worker holds ``Enc(a'_i s_i)`` and ``Enc(a'_i)`` with
``a'_i = 2^L a_i`` (:func:`pack_key`; the keys ``a'_i`` range over ``2^(lambda-1)`` values that are distinct
modulo ``p``, which is all the argument uses). For each run of ``m`` requests the worker sends a *value*
ciphertext and a *tag* ciphertext (:func:`securecompute.tiering.build_packed_query`)

    ``Z1 = Enc(sum_i 2^((i-1) G) P_i)``, ``Z2 = Enc(sum_i a'_i P_i)``, with ``P_i = A_i s_i + C_i``.

The custodian spends every named request's grant, decrypts each ``Z1`` modulo ``p``, requires it below
``2^(m G)`` and cuts it into the groups ``P_i`` (:func:`open_groups`); it then checks *all* tags with one
more decryption: for fresh random ``rho_t`` of 128 bits (:func:`combination_coefficients`), drawn after
the query is fixed, ``Dec(prod_t Z2_t^rho_t) = sum_t rho_t sum_(i in t) a'_i P_i (mod p)``. If some
``Z2_t`` differs from its expected value modulo ``p`` the combination misses with probability at most
``2^-128`` (fix the other ``rho``; one value of ``rho_t`` out of ``2^128`` hits). So, up to that, the
query passes only if every run ``t`` passes ``Z2_t = sum a'_i P_i(Z1_t) (mod p)`` with ``Z1_t`` in range.
``Z2_t`` is a residue, so it needs no room below ``p``: only the value plaintexts do.

Argument for one run. As above, ``Z1 = V1 + sum_x a'_x U1_x`` and ``Z2 = V2 + sum_x a'_x U2_x`` over every
key ``x`` the worker holds material for (the run's, the pack's others', any other request's), with
``U``, ``V`` fixed before the keys and independent of them; ``|S| = 2^(lambda-1)``.

* ``Z1`` free of keys (every ``U1_x = 0``): ``Z1 = V1`` and its groups are fixed. The check is linear in
  the keys with coefficient ``U2_x - P_x`` (``P_x = 0`` for a key outside the run): unless all vanish it
  holds for at most one value of one key, probability ``1/|S|``. If all vanish, ``V2 = 0`` and each group
  ``P_i = U2_i = beta_i s_i + gamma_i`` is an affine function of request ``i``'s *own* score, since
  ``Enc(a'_i s_i)`` and ``Enc(a'_i)`` are the only ciphertexts involving ``a'_i``. Another request's score
  in ``i``'s place (packed from outside, from another grant, duplicated or swapped within the pack) fails.
* ``Z1`` depends on keys: take the union over the ``2^(m G)`` values ``z`` of ``Z1``. For each, "``Z1 = z``"
  and the check are two linear equations in the keys. Independent: probability ``1/|S|^2``. Dependent:
  the check's coefficients are a multiple ``mu`` of ``Z1``'s; ``mu = 0`` pins every group, so one ``z``;
  otherwise one group ``P_j(z)`` fixes ``mu`` and so every other group, at most ``2^G`` values ``z``, each
  with probability ``1/|S|``. In all: at most ``2/|S| + 2^G/|S| + 2^(m G)/|S|^2``.

Hence ``lambda - 1 >= G + 136`` and ``2 (lambda - 1) >= m G + 136`` (:data:`PACK_MARGIN_BITS`) keep
every term below ``2^-134`` and a pack of up to 256 runs below ``2^-125`` with the combination; the key
also stays at least ``L + 128`` bits for the one-request form, which still fits below ``p``
(``2 L + lambda <= |n|/2 - 4``; :func:`_groups` picks ``m`` so). At 3072 bits a ``charlson-acci``
request (``k = 3``, ``B = 111``) packs four to a plaintext with a 735-bit key: ``ceil(N / 4) + 1``
decryptions answer ``N`` requests instead of ``N``.

What the custodian learns is unchanged: it knew each request's slots (it answers them by request) and
still sees exactly those values, blinded as before; the combined tag is a function of keys and values it
already holds. What a malicious worker learns is unchanged too: each request's group answers ``k`` signs
about an affine function of that request's own score, under that request's own grant, spent and audited
per request; a pack that fails any check is answered with coins for every request it names (a pack is
answered whole or not at all), and the one bit "passed or not" is the same one bit per query as before.

What a malicious worker can still learn: per grant (one per authorised request, single use), one
answer of ``k`` signs about an affine function ``A s + C`` of that request's own score, with ``A`` and
``C`` of its choosing, so at most ``k`` bits about the score, which is exactly the ``k`` comparisons the
design allows. A query that fails a check is answered with ``k`` fresh random signs (same shape, same
work: the custodian always decrypts), so failure is not observable except through the tier it spoils.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gmpy2
import phe

from securecompute.encryption import fast_encryptor
from securecompute.errors import ProtocolError
from securecompute.paillier import encrypted_number, modulus, raw_ciphertext
from securecompute.protocol import MAX_COMPARISONS, MIN_SLOT_BITS

MAC_SECURITY_BITS = 128
# Z = P + 2^L a P < 2^(3L + 128) must stay below p, which has |n|/2 bits and its top bit set (both top
# bits for our keys): 3L + 128 <= |n|/2 - 4 keeps it below 2^(|n|/2 - 2) < p with room to spare.
_HEADROOM_BITS = MAC_SECURITY_BITS + 4
# Packed queries: each failure term of the argument stays below 2^-136 (module docstring).
PACK_MARGIN_BITS = 136
# The custodian's random coefficients for checking every tag of a packed query with one decryption.
COMBINATION_BITS = 128


@dataclass(frozen=True)
class BindingParams:
    """The shape both sides agree on before the worker builds its query: ``comparisons`` slots of
    ``slot_bits``, ``capacity`` to a packed plaintext, and ``groups`` requests of this shape to one value
    plaintext of a packed query (1: never packed; see "Packing several requests")."""

    comparisons: int
    slot_bits: int
    capacity: int
    groups: int = 1

    @property
    def value_bits(self) -> int:
        """``L``: the bits of one packed plaintext (the slots, without the tag)."""
        return min(self.comparisons, self.capacity) * self.slot_bits

    @property
    def group_bits(self) -> int:
        """``G``: the bits one request's slots take in a packed query's value plaintext."""
        return self.comparisons * self.slot_bits

    @property
    def mac_bits(self) -> int:
        """``lambda``: the MAC key's length, ``L + 128`` or what packing needs (see the module docstring)."""
        return _mac_bits(self.value_bits, self.group_bits, self.groups)

    def layout(self) -> list[int]:
        """How many slots each packed plaintext holds, in order."""
        full, rest = divmod(self.comparisons, self.capacity)
        return [self.capacity] * full + ([rest] if rest else [])


def binding_params(modulus_bits: int, slot_bits: int, comparisons: int) -> BindingParams:
    """The packing for ``comparisons`` slots of ``slot_bits`` under a ``modulus_bits`` key."""
    if not 1 <= comparisons <= MAX_COMPARISONS:
        raise ProtocolError(f"a query holds 1 to {MAX_COMPARISONS} comparisons, got {comparisons}")
    capacity = (modulus_bits // 2 - _HEADROOM_BITS) // (3 * slot_bits) if slot_bits >= MIN_SLOT_BITS else 0
    if capacity < 1:
        raise ProtocolError(f"{slot_bits}-bit slots do not fit a {modulus_bits}-bit key with their tag")
    groups = _groups(modulus_bits, slot_bits, comparisons) if comparisons <= capacity else 1
    return BindingParams(comparisons=comparisons, slot_bits=slot_bits, capacity=capacity, groups=groups)


def _mac_bits(value_bits: int, group_bits: int, groups: int) -> int:
    bits = value_bits + MAC_SECURITY_BITS
    if groups > 1:  # lambda - 1 >= G + 136 and 2 (lambda - 1) >= m G + 136 (module docstring)
        bits = max(bits, group_bits + PACK_MARGIN_BITS + 1, -(-(groups * group_bits + PACK_MARGIN_BITS) // 2) + 1)
    return bits


def _groups(modulus_bits: int, slot_bits: int, comparisons: int) -> int:
    """The most requests whose slots fit one value plaintext below ``p`` while the single-request form
    (``P + 2^L a P < p``) still fits with the longer key that packing needs."""
    room = modulus_bits // 2 - 4
    group = comparisons * slot_bits
    groups = room // group
    while groups > 1 and 2 * group + _mac_bits(group, group, groups) > room:
        groups -= 1
    return max(groups, 1)


def new_mac_key(params: BindingParams) -> int:
    """A fresh MAC key ``a``, uniform in ``[2^(lambda-1), 2^lambda)`` (never 0, never short)."""
    top = 1 << (params.mac_bits - 1)
    return top | secrets.randbits(params.mac_bits - 1)


@dataclass(frozen=True)
class TagMaterial:
    """``Enc(2^L a s)`` and ``Enc(2^L a)`` as raw ciphertexts: what the worker needs to tag its query."""

    score_tag: int
    unit_tag: int


def tag_material(
    public_key: phe.PaillierPublicKey, score: phe.EncryptedNumber, mac_key: int, params: BindingParams
) -> TagMaterial:
    """The tag material for ``score`` (the domain's own ``Enc(s)``), re-randomised so that it cannot be
    linked to the ciphertexts it was computed from."""
    n = modulus(public_key)
    nsquare = gmpy2.mpz(n) ** 2
    shifted = _tag_key(mac_key, params, n)
    encryptor = fast_encryptor(public_key)
    score_tag = gmpy2.powmod(raw_ciphertext(score, public_key), shifted, nsquare) * encryptor.obfuscator() % nsquare
    return TagMaterial(score_tag=int(score_tag), unit_tag=encryptor.encrypt_residue(shifted))


def tag_material_for_known_score(
    public_key: phe.PaillierPublicKey, score: int, mac_key: int, params: BindingParams
) -> TagMaterial:
    """The same tag material as :func:`tag_material` when the data domain knows the score ``s`` itself
    (from the plaintext features its encrypted vector was made from): ``Enc(2^L a s)`` is then a fresh
    encryption of a known residue, which the fixed-base encryptor makes in a few dozen multiplications,
    instead of ``Enc(s)`` raised to a ``(2L + 128)``-bit power (794 bits at 3072-bit keys).

    Nothing in the argument of the module docstring changes: the worker still holds ``Enc(2^L a s)`` and
    ``Enc(2^L a)`` and nothing else that involves ``a``; both are fresh encryptions (distributed as phe's,
    like every ciphertext of the fast encryptor), so they are no more linkable to the vector than the
    re-randomised power was. A negative score is the residue ``n - |2^L a s|``, as phe encodes it."""
    n = modulus(public_key)
    shifted = _tag_key(mac_key, params, n)
    encryptor = fast_encryptor(public_key)
    return TagMaterial(
        score_tag=encryptor.encrypt_residue(shifted * score % n), unit_tag=encryptor.encrypt_residue(shifted)
    )


def _tag_key(mac_key: int, params: BindingParams, n: int) -> int:
    """``2^L a`` (:func:`pack_key`), which the tag material encrypts; it must lie below ``n``."""
    shifted = pack_key(mac_key, params)
    if shifted >= n:
        raise ProtocolError("the MAC key does not fit the key's plaintext space")
    return shifted


def tagged_score(public_key: phe.PaillierPublicKey, score: phe.EncryptedNumber, tags: TagMaterial) -> int:
    """``Enc(s) * Enc(2^L a s) = Enc(s (1 + 2^L a))``: the base the worker raises to its blinding ``A``."""
    nsquare = gmpy2.mpz(modulus(public_key)) ** 2
    return int(gmpy2.mpz(raw_ciphertext(score, public_key)) * tags.score_tag % nsquare)


def tag_material_ciphertexts(public_key: phe.PaillierPublicKey, tags: TagMaterial) -> list[phe.EncryptedNumber]:
    """The tag material as phe numbers (for serialisation with the other ciphertexts)."""
    return [encrypted_number(public_key, value, obfuscated=True) for value in (tags.score_tag, tags.unit_tag)]


def open_packed(plaintext: int, mac_key: int, params: BindingParams, count: int) -> int | None:
    """The packed slots ``P`` of a decrypted query plaintext, or None when the tag does not check out
    (``plaintext`` is not ``P + 2^L a P`` with ``0 <= P < 2^(count * slot_bits)``)."""
    value_bits = params.value_bits
    packed = plaintext & ((1 << value_bits) - 1)
    if packed >> (count * params.slot_bits):
        return None
    if plaintext >> value_bits != mac_key * packed:
        return None
    return packed


def slot_values(packed: int, count: int, slot_bits: int) -> list[int]:
    """The signed values of the slots (slot ``j`` holds ``v + 2^(slot_bits-1)``)."""
    offset, mask = 1 << (slot_bits - 1), (1 << slot_bits) - 1
    return [((packed >> (position * slot_bits)) & mask) - offset for position in range(count)]


def slot_signs(packed: int, count: int, slot_bits: int) -> list[bool]:
    """``True`` for each slot holding a positive value. A zero slot, which no honest query produces,
    reads as not positive: no refusal, no extra signal."""
    return [value > 0 for value in slot_values(packed, count, slot_bits)]


def pack_key(mac_key: int, params: BindingParams) -> int:
    """``a' = 2^L a``: the key the tag material encrypts (``Enc(a' s)``, ``Enc(a')``), and so the one a
    packed query's tags are checked with."""
    return mac_key << params.value_bits


def open_groups(plaintext: int, params: BindingParams, count: int) -> list[int] | None:
    """The ``count`` requests' slot groups ``P_1 .. P_count`` (request ``i`` at bits ``[(i-1) G, i G)``) of
    a packed query's value plaintext, or None when it does not lie in ``[0, 2^(count G))``."""
    bits = params.group_bits
    if not 0 <= plaintext < 1 << (count * bits):
        return None
    mask = (1 << bits) - 1
    return [(plaintext >> (position * bits)) & mask for position in range(count)]


def combination_coefficients(count: int) -> list[int]:
    """Fresh random coefficients ``rho_t`` for the custodian's one-decryption check of ``count`` tags."""
    return [secrets.randbits(COMBINATION_BITS) for _ in range(count)]


def multi_power(pairs: Sequence[tuple[Any, int]], modulus: Any) -> Any:
    """``prod base^exponent mod modulus`` by interleaved 4-bit windows (Straus 1964; Shamir's trick): one
    run of squarings for every power. The exponents are the caller's own (the worker's blinding, the
    custodian's combination coefficients), not key material; a negative one inverts its base."""
    window, size = 4, 16
    tables, exponents = [], []
    for base, exponent in pairs:
        if exponent < 0:
            base, exponent = gmpy2.invert(base, modulus), -exponent
        if not exponent:
            continue
        table = [gmpy2.mpz(1), gmpy2.mpz(base) % modulus]
        for _ in range(2, size):
            table.append(table[-1] * table[1] % modulus)
        tables.append(table)
        exponents.append(exponent)
    digits = -(-max((e.bit_length() for e in exponents), default=1) // window)
    accumulator = gmpy2.mpz(1)
    for digit in range(digits - 1, -1, -1):
        for _ in range(window):
            accumulator = accumulator * accumulator % modulus
        shift = digit * window
        for table, exponent in zip(tables, exponents, strict=True):
            index = (exponent >> shift) & 15
            if index:
                accumulator = accumulator * table[index] % modulus
    return accumulator


def keyed_signs(key: bytes, message: str, count: int) -> list[bool]:
    """``count`` coins that look random to anyone without ``key`` but are the same for the same ``message``:
    the bits of HMAC-SHA256 in counter mode."""
    stream = b"".join(
        hmac.new(key, f"{block}:{message}".encode(), hashlib.sha256).digest() for block in range(-(-count // 256))
    )
    return [bool(stream[index // 8] >> (index % 8) & 1) for index in range(count)]


def random_signs(count: int) -> list[bool]:
    """The answer to a query that failed a check: fair coins, the same shape as a real answer."""
    return [bool(secrets.randbits(1)) for _ in range(count)]


@dataclass(frozen=True)
class GrantTerms:
    """What the data domain pinned when it authorised a request: the custodian answers one query for
    ``request_id`` under ``key_id``, of exactly ``comparisons`` slots of ``slot_bits``, tagged with ``mac_key``."""

    request_id: str
    key_id: str
    comparisons: int
    slot_bits: int
    mac_key: int

    def params(self, modulus_bits: int) -> BindingParams:
        return binding_params(modulus_bits, self.slot_bits, self.comparisons)
