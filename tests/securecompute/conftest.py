"""Key pairs are generated once per session: 2048 and 3072 bits, the two sizes the platform allows."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import phe
import pytest

from securecompute.binding import BindingParams, GrantTerms, TagMaterial, new_mac_key, tag_material
from securecompute.keys import generate_keypair, key_id
from securecompute.paillier import modulus
from securecompute.protocol import ComparisonQuery
from securecompute.tiering import DEFAULT_SCORE_BOUND, TieringState, build_tier_query, tiering_params

KeyPair = tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]


@pytest.fixture(scope="session")
def keys_2048() -> KeyPair:
    return generate_keypair(2048)


@pytest.fixture(scope="session")
def keys_3072() -> KeyPair:
    return generate_keypair(3072)


@pytest.fixture(scope="session")
def other_keys() -> KeyPair:
    return generate_keypair(2048)


@dataclass(frozen=True)
class Authorised:
    """One request as the data domain authorises it: the packing, the grant's terms (the custodian's
    half) and the tag material (the worker's half)."""

    params: BindingParams
    terms: GrantTerms
    tags: TagMaterial
    score_bound: int


def authorise(
    public_key: phe.PaillierPublicKey,
    score: phe.EncryptedNumber,
    thresholds: Sequence[int],
    *,
    score_bound: int = DEFAULT_SCORE_BOUND,
    request_id: str = "r",
) -> Authorised:
    """What ``datadomain.services.comparison_grants_issue`` does for one request, without the database."""
    bits = modulus(public_key).bit_length()
    params = tiering_params(bits, thresholds, score_bound=score_bound)
    mac_key = new_mac_key(params)
    terms = GrantTerms(request_id, key_id(public_key), len(thresholds), params.slot_bits, mac_key)
    return Authorised(params, terms, tag_material(public_key, score, mac_key, params), score_bound)


def honest_query(
    public_key: phe.PaillierPublicKey,
    score: phe.EncryptedNumber,
    thresholds: Sequence[int],
    grant: Authorised,
    rng: random.Random | None = None,
) -> tuple[ComparisonQuery, TieringState]:
    """The scoring worker's query for ``score`` under ``grant``."""
    return build_tier_query(
        public_key, score, grant.tags, thresholds, request_id=grant.terms.request_id, params=grant.params,
        score_bound=grant.score_bound, rng=rng,
    )  # fmt: skip
