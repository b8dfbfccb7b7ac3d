"""A key planted in the database: whoever can write the key table (a compromised scoring worker could,
with the shared login of before) marks a key pair of its own active, and every vector encrypted from then
on is encrypted to it. CUSTODIAN_KEY_ID pins the key new ciphertexts are made under; the planted key is
refused. The undefended run (no pin) shows the attacker decrypting a person's features with its own key.
"""

from __future__ import annotations

from typing import Any

import pytest

from datadomain.errors import DomainError
from datadomain.keyring import active_key_id
from datadomain.models import CustodianKey
from securecompute.keys import generate_keypair, key_id, public_key_to_json
from securecompute.protocol import ciphertexts_from_json
from tests.security.attacks.conftest import World
from underwriting.models import ScoringInput, UnderwritingRequest

pytestmark = pytest.mark.django_db


def plant_key() -> Any:
    """The attacker's own key pair, made the active key; the custodian's key is pushed aside."""
    public_key, private_key = generate_keypair(2048)
    CustodianKey.objects.update(status=CustodianKey.Status.RETIRING)
    CustodianKey.objects.create(key_id=key_id(public_key), public_key_json=public_key_to_json(public_key))
    return private_key


def test_a_planted_active_key_is_refused_when_the_key_is_pinned(world: World, settings: Any) -> None:
    settings.CUSTODIAN_KEY_ID = active_key_id()
    plant_key()

    with pytest.raises(DomainError) as refused:
        world.authorise(1, prefix="P")
    assert refused.value.code == "key_not_pinned"
    # Nothing was encrypted to the planted key, and the request waits (the drain is retried; an operator
    # sees the refusal) instead of going on under the wrong key.
    assert not ScoringInput.objects.exists()
    assert list(UnderwritingRequest.objects.values_list("status", flat=True)) == ["extracting"]


def test_without_the_pin_the_planted_key_reads_a_persons_features(world: World, settings: Any) -> None:
    settings.CUSTODIAN_KEY_ID = ""
    planted = plant_key()

    stolen = world.authorise(1, prefix="U")[0]

    given = ScoringInput.objects.get(request_id=stolen.ref)
    assert given.key_id == key_id(planted.public_key)
    features = ciphertexts_from_json(given.features, planted.public_key)
    assert [planted.decrypt(value) for value in features] == stolen.true_features
