"""Plain-Python secure computation: Paillier keys, fast encryption, encrypted linear scoring and the
blinded comparison protocol used for tiering.

No Django import, no settings: callers pass keys and numbers in. ``securecompute.private`` holds
everything that needs a private key; an import-linter contract lets only ``datadomain.custodian``
import it, so this package's top level never imports it.

Typical flow (DESIGN.md, steps 3-5)::

    encryptor = fast_encryptor(public_key)                        # data domain, once per process
    features = encryptor.encrypt_vector([1, 0, 3])
    params = tiering_params(key_bits, [1, 3, 5], score_bound=9)   # data domain: the grant's terms,
    mac_key = new_mac_key(params)                                 # kept for the custodian alone,
    tags = tag_material(public_key, domain_score, mac_key, params) # handed to the worker
    score = encrypted_score(public_key, features, [2, -1, 1])    # scoring worker
    query, state = build_tier_query(public_key, score, tags, [1, 3, 5], request_id="42", params=params, score_bound=9)
    terms = GrantTerms("42", key_id(public_key), 3, params.slot_bits, mac_key)
    answer = private.answer_comparisons(private_key, query, terms).answer   # custodian
    tier = tier_index_from_answer(state, answer)                  # scoring worker: 0-based tier
"""

from securecompute.binding import BindingParams, GrantTerms, TagMaterial, new_mac_key, tag_material
from securecompute.encryption import FastEncryptor, fast_encryptor
from securecompute.errors import (
    InvalidCiphertextError,
    KeyTooShortError,
    PlaintextOverflowError,
    ProtocolError,
    SecureComputeError,
    WrongKeyError,
)
from securecompute.keys import generate_keypair, key_id, public_key_from_json, public_key_to_json
from securecompute.protocol import (
    ComparisonAnswer,
    ComparisonQuery,
    answer_from_json,
    answer_to_json,
    ciphertexts_from_json,
    ciphertexts_to_json,
    query_from_json,
    query_to_json,
)
from securecompute.scoring import encrypted_score, score_bound
from securecompute.tiering import (
    TieringState,
    build_tier_query,
    tier_index_from_answer,
    tier_index_plain,
    tiering_params,
)

__all__ = [
    "BindingParams",
    "ComparisonAnswer",
    "ComparisonQuery",
    "FastEncryptor",
    "GrantTerms",
    "InvalidCiphertextError",
    "KeyTooShortError",
    "PlaintextOverflowError",
    "ProtocolError",
    "SecureComputeError",
    "TagMaterial",
    "TieringState",
    "WrongKeyError",
    "answer_from_json",
    "answer_to_json",
    "build_tier_query",
    "ciphertexts_from_json",
    "ciphertexts_to_json",
    "encrypted_score",
    "fast_encryptor",
    "generate_keypair",
    "key_id",
    "new_mac_key",
    "public_key_from_json",
    "public_key_to_json",
    "query_from_json",
    "query_to_json",
    "score_bound",
    "tag_material",
    "tier_index_from_answer",
    "tier_index_plain",
    "tiering_params",
]
