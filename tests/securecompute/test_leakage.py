"""What the custodian sees: signs independent of the score, magnitudes within the documented bound.

The statistics need tens of thousands of protocol runs, so they run on the plaintext side of the
protocol: :meth:`BlindingPlan.custodian_view` gives the exact slot values the custodian decrypts, which
``test_custodian_view_is_exactly_what_the_custodian_decrypts`` checks against real 2048-bit decryptions
with the same seeded randomness. Key size plays no role in the blinding itself (only in how many slots
fit in one plaintext), so no small keys are needed. Seeds are fixed, so the tests are deterministic.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

from securecompute import fast_encryptor
from securecompute.binding import open_packed, slot_values
from securecompute.private import _crt_key
from securecompute.tiering import (
    BLINDING_MAX_BITS,
    BLINDING_MIN_BITS,
    BlindingPlan,
    difference_bound,
    magnitude_leakage_bits,
    plan_blinding,
    slot_bits_for,
    tiering_params,
)
from tests.securecompute.conftest import KeyPair, authorise, honest_query

THRESHOLDS = [1, 3, 5]
BOUND = 40


def chi_square_critical(df: int, z: float = 3.09) -> float:
    """Upper 0.1% point of chi-square (z = 3.09) by the Wilson-Hilferty approximation."""
    return float(df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3)


def plan(thresholds: list[int], score_bound: int, rng: random.Random) -> BlindingPlan:
    params = tiering_params(2048, thresholds, score_bound=score_bound)
    return plan_blinding(thresholds, score_bound=score_bound, params=params, rng=rng)[0]


def test_custodian_view_is_exactly_what_the_custodian_decrypts(keys_2048: KeyPair) -> None:
    """The packed slots, once the tag is checked and stripped: the tag is ``a`` times the same value, with
    ``a`` the custodian's own key, so it shows the custodian nothing more."""
    public_key, private_key = keys_2048
    crt = _crt_key(private_key)
    for seed, score in enumerate([-40, 0, 1, 2, 5, 6, 40]):
        encrypted = fast_encryptor(public_key).encrypt(score)
        grant = authorise(public_key, encrypted, THRESHOLDS, score_bound=BOUND)
        query, _ = honest_query(public_key, encrypted, THRESHOLDS, grant, rng=random.Random(seed))
        seen = []
        for ciphertext, count in zip(query.ciphertexts, grant.params.layout(), strict=True):
            packed = open_packed(crt.decrypt(ciphertext), grant.terms.mac_key, grant.params, count)
            assert packed is not None
            seen += slot_values(packed, count, query.slot_bits)
        assert seen == plan(THRESHOLDS, BOUND, random.Random(seed)).custodian_view(score)


def test_signs_are_uniform_whatever_the_score() -> None:
    """Chi-square goodness of fit of the 8 sign patterns to uniform, for each of 8 very different scores."""
    rng = random.Random(2026)
    scores = [-40, 0, 1, 2, 3, 5, 6, 40]
    runs = 800
    statistic = 0.0
    for score in scores:
        patterns: Counter[tuple[bool, ...]] = Counter()
        for _ in range(runs):
            blinding = plan(THRESHOLDS, BOUND, rng)
            patterns[tuple(value > 0 for value in blinding.custodian_view(score))] += 1
        expected = runs / 8
        statistic += sum(
            (patterns[(a, b, c)] - expected) ** 2 / expected for a in (0, 1) for b in (0, 1) for c in (0, 1)
        )
    assert statistic < chi_square_critical(df=len(scores) * 7)


def test_signs_still_decide_the_tier() -> None:
    rng = random.Random(7)
    for score in range(-45, 46):
        blinding = plan(THRESHOLDS, BOUND, rng)
        for slot, value in zip(blinding.slots, blinding.custodian_view(score), strict=True):
            assert ((value > 0) != slot.flipped) == (score > slot.threshold)


def test_magnitudes_stay_inside_the_documented_interval() -> None:
    rng = random.Random(11)
    bound = difference_bound(BOUND, THRESHOLDS)
    slot_bits = slot_bits_for(BOUND, THRESHOLDS)
    for _ in range(3000):
        score = rng.randint(-BOUND, BOUND)
        blinding = plan(THRESHOLDS, BOUND, rng)
        for slot, value in zip(blinding.slots, blinding.custodian_view(score), strict=True):
            assert 2 ** (BLINDING_MIN_BITS - 2) <= slot.r // 4 < abs(value) < 2**BLINDING_MAX_BITS * (bound + 1)
            assert abs(value) < 2 ** (slot_bits - 1)


def mutual_information(samples: dict[int, list[float]], bin_bits: float = 1.0) -> float:
    """Plug-in estimate, in bits, of I(class; log2|v|) with equiprobable classes and 1-bit bins."""
    joint: Counter[tuple[int, int]] = Counter()
    for label, values in samples.items():
        joint.update((label, int(value // bin_bits)) for value in values)
    total = sum(joint.values())
    by_class = Counter({label: len(values) for label, values in samples.items()})
    by_bin: Counter[int] = Counter()
    for (_, bin_index), count in joint.items():
        by_bin[bin_index] += count
    return sum(
        count / total * math.log2(count * total / (by_class[label] * by_bin[bin_index]))
        for (label, bin_index), count in joint.items()
    )


def magnitudes(score: int, threshold: int, score_bound: int, rng: random.Random, runs: int) -> list[float]:
    values = []
    for _ in range(runs):
        blinding = plan([threshold], score_bound, rng)
        values.append(math.log2(abs(blinding.custodian_view(score)[0])))
    return values


def test_magnitude_leakage_stays_within_the_bound() -> None:
    """The two most distant differences |s - t - 1| the bound allows are the easiest to tell apart."""
    rng = random.Random(3)
    for score_bound in [40, 2**30]:
        bound_bits = magnitude_leakage_bits(score_bound, [0])
        samples = {
            0: magnitudes(1, 0, score_bound, rng, 8000),  # d = 0
            1: magnitudes(score_bound, 0, score_bound, rng, 8000),  # d = score_bound - 1
        }
        estimate = mutual_information(samples)
        assert estimate <= bound_bits, (score_bound, estimate, bound_bits)
        # And the estimate is not trivially small: the bound is within a small factor of reality.
        assert estimate >= bound_bits / 3, (score_bound, estimate, bound_bits)


def test_leakage_bound_per_request() -> None:
    # Charlson-sized scores leak well under a bit per request through magnitudes; the tier itself is 2 bits.
    assert magnitude_leakage_bits(40, THRESHOLDS) < 0.6
    assert magnitude_leakage_bits(2**32, THRESHOLDS) < 2.0


# --- over time: a custodian that could link a year of one person's requests ----------------------------

# A Charlson-like score distribution for the simulated people (most have little history).
PRIOR = {0: 0.40, 1: 0.20, 2: 0.13, 3: 0.09, 4: 0.06, 5: 0.05, 6: 0.03, 7: 0.02, 8: 0.01, 9: 0.01}


def slot_likelihood(magnitude: int, difference: int, width_bits: int) -> float:
    """Density of ``log2|v|`` for ``v = r (d + rho)``, ``log2 r`` uniform on ``[8, 8 + W)``, ``rho`` uniform
    on ``(1/4, 3/4)``: (1/W) times the share of ``rho`` for which ``log2 r`` lands inside its range."""
    x = math.log2(magnitude)
    low, high = (difference + 0.25, difference + 0.75) if difference >= 0 else (-difference - 0.75, -difference - 0.25)
    inside = min(high, 2 ** (x - BLINDING_MIN_BITS)) - max(low, 2 ** (x - BLINDING_MIN_BITS - width_bits))
    return max(inside, 0.0) / (high - low) / width_bits


def linked_guess(requests: list[list[int]], width_bits: int) -> int:
    """The custodian's best guess of one person's score from the magnitudes of all their requests: the
    posterior mode, each request's three slots matched to the thresholds in every order (it never learns
    the shuffle)."""
    posterior = dict(PRIOR)
    for magnitudes_seen in requests:
        for score in posterior:
            differences = [score - threshold - 1 for threshold in THRESHOLDS]
            posterior[score] *= sum(
                math.prod(slot_likelihood(m, d, width_bits) for m, d in zip(order, differences, strict=True))
                for order in itertools.permutations(magnitudes_seen)
            )
    return max(posterior, key=lambda score: posterior[score])


def linked_accuracy(width_bits: int, requests_per_person: int, people: int, rng: random.Random) -> float:
    scores = list(PRIOR)
    right = 0
    for _ in range(people):
        score = rng.choices(scores, weights=list(PRIOR.values()))[0]
        seen = []
        for _ in range(requests_per_person):
            blinded = [
                abs(
                    int(
                        2 ** (BLINDING_MIN_BITS + width_bits * rng.random()) * (score - t - 1 + rng.uniform(0.25, 0.75))
                    )
                )
                for t in THRESHOLDS
            ]
            seen.append(sorted(blinded))  # the custodian sees the magnitudes in a shuffled order
        right += linked_guess(seen, width_bits) == score
    return right / people


def test_a_custodian_linking_a_years_requests_for_one_person_learns_little() -> None:
    """The worst case over a year: UNDERWRITING_SUBJECT_LIMIT_YEAR (24) requests about one person, all
    linked (its database role gives it no way to link them; this assumes it found one). From the prior
    alone the custodian guesses the exact score right 40 % of the time; with the magnitudes of one request
    about 42 %, of 24 requests about 49 % (docs/privacy.md). Seeded, so deterministic; the bounds leave
    room for sampling noise (about 3 points at 300 people)."""
    baseline = max(PRIOR.values())
    width = BLINDING_MAX_BITS - BLINDING_MIN_BITS
    one = linked_accuracy(width, 1, 300, random.Random(5))
    year = linked_accuracy(width, 24, 300, random.Random(5))
    assert one - baseline < 0.06, one
    assert year - baseline < 0.16, year
