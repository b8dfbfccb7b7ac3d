"""Worker side of the blinded tiering protocol: which tier an encrypted score falls in, without the key.

Tier definition
---------------
Thresholds ``t_1 < ... < t_k`` are the ``max_score`` of every tier but the last, ascending and inclusive:
a score ``s`` belongs to the first tier whose ``max_score >= s``. Its 0-based tier index is therefore
``#{j : s > t_j}``, the number of thresholds the score strictly exceeds (:func:`tier_index_plain`).

What the custodian receives
---------------------------
For every threshold the worker picks fresh ``r`` and ``r'``, a sign ``sigma`` in {+1, -1} and computes,
homomorphically, ``v = sigma * (r * (s - (t + 1)) + r')``. With ``d = s - t - 1`` and
``r/4 < r' < 3r/4`` (a sub-range of the ``0 < r' < r`` of the design): ``d >= 0`` gives ``v > r/4 > 0``
and ``d <= -1`` gives ``v < -r/4 < 0``, so ``sign(v) = sigma`` exactly when ``s > t``, ``v`` is never 0
and ``|v| >= r/4``. The ``k`` values are shuffled, packed into one plaintext ``P`` (slot width from a bound
on ``|d|``), tagged with the request's MAC (:mod:`securecompute.binding`: the ciphertext holds
``P + 2^L a P``) and re-randomised with a fresh obfuscator, so the custodian decrypts once, checks the tag
and answers the signs; a query whose tag fails gets random signs instead.

Leakage bound
-------------
* Signs: ``sigma`` is uniform and independent of everything else, so each sign the custodian sees is a
  fair coin whatever the score, and the shuffle hides which threshold a slot belongs to.
* Magnitudes: ``r`` is log-uniform, ``log2 r`` uniform on ``[8, 104)`` (width ``W = 96`` bits). Then
  ``log2|v| = log2 r + log2|d +- rho|`` with ``rho = r'/r`` in ``(1/4, 3/4)``, and for ``|d| <= D``,
  ``log2|v|`` lies in an interval of length ``W + log2(D + 1) + 2``. Given ``d`` and ``rho`` it is
  ``log2 r`` shifted, with entropy ``log2 W``. Hence the mutual information between the score and one slot
  is at most ``log2(1 + (log2(D + 1) + 2) / W)`` bits, and at most ``k`` times that for a whole request
  (the slots' blinding is independent). For a Charlson-sized score (``D < 128``) that is under 0.14 bit
  per slot (it was 64 bits wide before; 96 bits cut the bound by a third for 32 more bits per slot).
  :func:`magnitude_leakage_bits` computes it; the tests check it empirically.

The worker keeps the :class:`TieringState` (the shuffle and the flips); it must never travel to the custodian.
"""

from __future__ import annotations

import itertools
import math
import random
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import gmpy2
import phe

from securecompute.binding import BindingParams, TagMaterial, binding_params, multi_power, tagged_score
from securecompute.encryption import fast_encryptor
from securecompute.errors import ProtocolError
from securecompute.keys import key_id
from securecompute.paillier import modulus, raw_ciphertext
from securecompute.protocol import (
    MAX_COMPARISONS,
    PROTOCOL_VERSION,
    ComparisonAnswer,
    ComparisonQuery,
    PackedQuery,
    pack_slots,
)

BLINDING_MIN_BITS = 8
BLINDING_MAX_BITS = 104
BLINDING_WIDTH_BITS = BLINDING_MAX_BITS - BLINDING_MIN_BITS
# A generous default for callers without a bound of their own; a tight bound (see
# securecompute.scoring.score_bound) makes slots, and so the query's exponentiation, shorter.
DEFAULT_SCORE_BOUND = 2**32


class TieringStateJSON(TypedDict):
    v: int
    request_id: str
    thresholds: list[int]
    order: list[int]
    flipped: list[bool]


@dataclass(frozen=True)
class TieringState:
    """What the worker needs to read the answer: slot ``j`` compared the score with
    ``thresholds[order[j]]`` and its value was negated when ``flipped[j]``. Keep it from the custodian."""

    request_id: str
    thresholds: tuple[int, ...]
    order: tuple[int, ...]
    flipped: tuple[bool, ...]

    def to_dict(self) -> TieringStateJSON:
        return {
            "v": PROTOCOL_VERSION,
            "request_id": self.request_id,
            "thresholds": list(self.thresholds),
            "order": list(self.order),
            "flipped": list(self.flipped),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TieringState:
        if data.get("v") != PROTOCOL_VERSION:
            raise ProtocolError(f"unsupported tiering state version {data.get('v')!r}")
        request_id = data.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise ProtocolError("tiering state needs a request_id")
        state = cls(
            request_id=request_id,
            thresholds=tuple(_int_list(data.get("thresholds"), "thresholds")),
            order=tuple(_int_list(data.get("order"), "order")),
            flipped=tuple(_bool_list(data.get("flipped"), "flipped")),
        )
        k = len(state.thresholds)
        if sorted(state.order) != list(range(k)) or len(state.flipped) != k:
            raise ProtocolError("tiering state is inconsistent")
        return state


@dataclass(frozen=True)
class SlotBlinding:
    """One comparison: ``value(s) = -/+ (r * (s - threshold - 1) + r_prime)``."""

    threshold: int
    r: int
    r_prime: int
    flipped: bool

    def value(self, score: int) -> int:
        blinded = self.r * (score - self.threshold - 1) + self.r_prime
        return -blinded if self.flipped else blinded


@dataclass(frozen=True)
class BlindingPlan:
    """The blinding of one request, slot by slot in query order, and how the slots are packed."""

    slot_bits: int
    layout: tuple[int, ...]
    slots: tuple[SlotBlinding, ...]

    def groups(self) -> list[tuple[SlotBlinding, ...]]:
        groups, start = [], 0
        for count in self.layout:
            groups.append(self.slots[start : start + count])
            start += count
        return groups

    def custodian_view(self, score: int) -> list[int]:
        """The signed slot values the custodian decrypts for ``score``: exactly what it ever sees."""
        return [slot.value(score) for slot in self.slots]


def tier_index_plain(score: int, thresholds: Sequence[int]) -> int:
    """Reference: the number of thresholds ``score`` strictly exceeds (its 0-based tier)."""
    return sum(1 for threshold in thresholds if score > threshold)


def difference_bound(score_bound: int, thresholds: Sequence[int]) -> int:
    """``D >= |s - t - 1|`` for every ``|s| <= score_bound`` and threshold ``t``."""
    return score_bound + max(abs(t) for t in thresholds) + 1


def slot_bits_for(score_bound: int, thresholds: Sequence[int]) -> int:
    """Slot width so that ``|v| < 2^104 * (D + 1)`` fits with its offset: ``104 + bits(D + 1) + 1``."""
    return BLINDING_MAX_BITS + (difference_bound(score_bound, thresholds) + 1).bit_length() + 1


def magnitude_leakage_bits(score_bound: int, thresholds: Sequence[int]) -> float:
    """Upper bound, in bits, on what one request's magnitudes tell the custodian about the score."""
    spread = math.log2(difference_bound(score_bound, thresholds) + 1) + 2
    return len(thresholds) * math.log2(1 + spread / BLINDING_WIDTH_BITS)


def tiering_params(modulus_bits: int, thresholds: Sequence[int], *, score_bound: int) -> BindingParams:
    """The slot width and packing for a manual's ``thresholds``: the data domain pins them in the grant
    and the tag material, the worker packs its query by them, the custodian opens it by them."""
    _check_thresholds(thresholds, score_bound)
    return binding_params(modulus_bits, slot_bits_for(score_bound, thresholds), len(thresholds))


def plan_blinding(
    thresholds: Sequence[int], *, score_bound: int, params: BindingParams, rng: random.Random
) -> tuple[BlindingPlan, tuple[int, ...]]:
    """Fresh blinding for every threshold, shuffled; returns the plan and the shuffle (``order``)."""
    _check_thresholds(thresholds, score_bound)
    if params.comparisons != len(thresholds) or params.slot_bits < slot_bits_for(score_bound, thresholds):
        raise ValueError("the binding parameters do not fit these thresholds")
    order = list(range(len(thresholds)))
    rng.shuffle(order)
    slots = []
    for index in order:
        r = _log_uniform(rng)
        r_prime = rng.randrange(r // 4 + 1, 3 * r // 4)  # r/4 < r' < 3r/4, so that |v| > r/4
        slots.append(SlotBlinding(thresholds[index], r, r_prime, flipped=bool(rng.getrandbits(1))))
    return BlindingPlan(params.slot_bits, tuple(params.layout()), tuple(slots)), tuple(order)


def build_tier_query(
    public_key: phe.PaillierPublicKey,
    score: phe.EncryptedNumber,
    tags: TagMaterial,
    thresholds: Sequence[int],
    *,
    request_id: str,
    params: BindingParams,
    score_bound: int = DEFAULT_SCORE_BOUND,
    rng: random.Random | None = None,
) -> tuple[ComparisonQuery, TieringState]:
    """The query for the custodian and the state to read its answer with.

    ``tags`` is the request's tag material from the data domain (:mod:`securecompute.binding`): each packed
    plaintext ``P = A s + C`` goes out as ``Enc(P + 2^L a P)``, which the custodian checks against the
    request's MAC key. A query built on any other score fails that check and is answered with random signs.
    ``score_bound`` must bound ``|s|`` (see :func:`securecompute.scoring.score_bound`) and ``params`` come
    from :func:`tiering_params` for the same bound. ``rng`` is for tests only: production uses the
    operating system's CSPRNG.
    """
    if not request_id:
        raise ValueError("request_id must be a non-empty string")
    n = gmpy2.mpz(modulus(public_key))
    nsquare = n * n
    plan, order = plan_blinding(thresholds, score_bound=score_bound, params=params, rng=rng or secrets.SystemRandom())
    base = gmpy2.mpz(tagged_score(public_key, score, tags))  # Enc(s (1 + 2^L a))
    unit = gmpy2.mpz(tags.unit_tag)  # Enc(2^L a)
    encryptor = fast_encryptor(public_key)
    packed = []
    for group in plan.groups():
        coefficient, constant = _affine(group, plan.slot_bits)
        # Enc(s(1 + 2^L a))^A * Enc(2^L a)^C * Enc(C) = Enc((A s + C)(1 + 2^L a)): the packed slots and their
        # tag. Enc(C) brings a fresh obfuscator, so the query's randomness is independent of its inputs'.
        blinded = multi_power([(base, coefficient), (unit, constant)], nsquare)
        packed.append(int(blinded * encryptor.encrypt_residue(constant) % nsquare))
    query = ComparisonQuery(
        key_id=key_id(public_key),
        request_id=request_id,
        comparisons=len(thresholds),
        slot_bits=plan.slot_bits,
        ciphertexts=tuple(packed),
    )
    state = TieringState(
        request_id=request_id,
        thresholds=tuple(thresholds),
        order=order,
        flipped=tuple(slot.flipped for slot in plan.slots),
    )
    return query, state


@dataclass(frozen=True)
class PackItem:
    """One request of a packed query: its encrypted score, the tag material the domain issued for it,
    its manual's thresholds and the bound on ``|s|`` its slots were sized by."""

    request_id: str
    score: phe.EncryptedNumber
    tags: TagMaterial
    thresholds: tuple[int, ...]
    score_bound: int


def build_packed_query(
    public_key: phe.PaillierPublicKey,
    items: Sequence[PackItem],
    *,
    params: BindingParams,
    pack_id: str,
    rng: random.Random | None = None,
) -> tuple[PackedQuery, dict[str, TieringState]]:
    """One query for several requests of one shape (``params``, with ``params.groups >= 2``) and the state
    to read each request's answer with.

    Each request is blinded exactly as :func:`build_tier_query` blinds it (fresh ``r``, ``r'``, flips and
    shuffle); ``params.groups`` requests share a value plaintext ``sum_i 2^((i-1) G) P_i`` (``Enc(C)``
    re-randomises it) and each value plaintext gets one tag ``Enc(sum_i a'_i P_i)``, made from the
    requests' own tag material and re-randomised (securecompute.binding, "Packing several requests").
    """
    if params.groups < 2 or not items:
        raise ValueError("packing needs a shape that packs and at least one request")
    if len({item.request_id for item in items}) != len(items) or not all(item.request_id for item in items):
        raise ValueError("each request of a pack needs its own non-empty id")
    n = gmpy2.mpz(modulus(public_key))
    nsquare = n * n
    rng = rng or secrets.SystemRandom()
    encryptor = fast_encryptor(public_key)
    states: dict[str, TieringState] = {}
    values, tags = [], []
    for start in range(0, len(items), params.groups):
        value_pairs: list[tuple[Any, int]] = []
        tag_pairs: list[tuple[Any, int]] = []
        constant = 0
        for position, item in enumerate(items[start : start + params.groups]):
            plan, order = plan_blinding(item.thresholds, score_bound=item.score_bound, params=params, rng=rng)
            coefficient, own_constant = _affine(plan.slots, plan.slot_bits)
            shift = position * params.group_bits
            value_pairs.append((gmpy2.mpz(raw_ciphertext(item.score, public_key)), coefficient << shift))
            constant += own_constant << shift
            tag_pairs += [(gmpy2.mpz(item.tags.score_tag), coefficient), (gmpy2.mpz(item.tags.unit_tag), own_constant)]
            states[item.request_id] = TieringState(
                request_id=item.request_id,
                thresholds=item.thresholds,
                order=order,
                flipped=tuple(slot.flipped for slot in plan.slots),
            )
        # Enc(sum 2^(iG) (A_i s_i + C_i)): Enc(C) brings a fresh obfuscator; Enc(sum a'_i (A_i s_i + C_i)),
        # re-randomised, so neither can be linked to the ciphertexts it was computed from.
        values.append(int(multi_power(value_pairs, nsquare) * encryptor.encrypt_residue(constant) % nsquare))
        tags.append(int(multi_power(tag_pairs, nsquare) * encryptor.obfuscator() % nsquare))
    query = PackedQuery(
        key_id=key_id(public_key),
        pack_id=pack_id,
        request_ids=tuple(item.request_id for item in items),
        comparisons=params.comparisons,
        slot_bits=params.slot_bits,
        values=tuple(values),
        tags=tuple(tags),
    )
    return query, states


def _affine(slots: Sequence[SlotBlinding], slot_bits: int) -> tuple[int, int]:
    """``(A, C)`` with ``A s + C`` the packed slots (each slot ``v + 2^(slot_bits-1)``) for score ``s``."""
    coefficient = sum(
        (-slot.r if slot.flipped else slot.r) << (position * slot_bits) for position, slot in enumerate(slots)
    )
    return coefficient, pack_slots([slot.value(0) for slot in slots], slot_bits)


def tier_index_from_answer(state: TieringState, answer: ComparisonAnswer) -> int:
    """The number of thresholds the score strictly exceeds, i.e. the 0-based index of its tier.

    With ascending tiers whose ``max_score`` is inclusive, the score's tier is the first one whose
    ``max_score >= score``; index ``k`` (one past the last threshold) is the open-ended last tier.
    Raises :class:`ProtocolError` for an answer to another request or one that is not monotone
    (exceeding a threshold but not a lower one), which only a faulty or dishonest custodian produces.
    """
    if answer.request_id != state.request_id:
        raise ProtocolError("the answer belongs to another request")
    if len(answer.positive) != len(state.order):
        raise ProtocolError(f"expected {len(state.order)} signs, got {len(answer.positive)}")
    exceeded = [False] * len(state.order)
    for position, index in enumerate(state.order):
        exceeded[index] = answer.positive[position] != state.flipped[position]
    tier = sum(exceeded)
    if exceeded != [True] * tier + [False] * (len(exceeded) - tier):
        raise ProtocolError("the answer is not monotone in the thresholds")
    return tier


def _log_uniform(rng: random.Random) -> int:
    """``floor(2^e)`` with ``e`` uniform on ``[8, 104)`` at 64-bit resolution (160-bit exact arithmetic)."""
    with gmpy2.context(gmpy2.get_context(), precision=160):
        exponent = gmpy2.mpfr(BLINDING_MIN_BITS) + gmpy2.mpfr(BLINDING_WIDTH_BITS * rng.getrandbits(64)) / 2**64
        return int(gmpy2.floor(gmpy2.exp2(exponent)))


def _check_thresholds(thresholds: Sequence[int], score_bound: int) -> None:
    if not 1 <= len(thresholds) <= MAX_COMPARISONS:
        raise ValueError(f"between 1 and {MAX_COMPARISONS} thresholds are supported, got {len(thresholds)}")
    if any(isinstance(t, bool) or not isinstance(t, int) for t in thresholds):
        raise TypeError("thresholds must be integers")
    if any(a >= b for a, b in itertools.pairwise(thresholds)):
        raise ValueError("thresholds must be strictly ascending")
    if isinstance(score_bound, bool) or not isinstance(score_bound, int) or score_bound < 0:
        raise ValueError("score_bound must be a non-negative integer")


def _list(value: object, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise ProtocolError(f"{name} must be a list")
    return value


def _int_list(value: object, name: str) -> list[int]:
    items = _list(value, name)
    if any(isinstance(item, bool) or not isinstance(item, int) for item in items):
        raise ProtocolError(f"{name} must be a list of integers")
    return items


def _bool_list(value: object, name: str) -> list[bool]:
    items = _list(value, name)
    if not all(isinstance(item, bool) for item in items):
        raise ProtocolError(f"{name} must be a list of booleans")
    return items
