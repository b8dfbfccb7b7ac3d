"""Helpers for the tests of packed comparison queries (securecompute.binding, "Packing several requests").

Packing needs room for several requests' slots below ``p``: at 2048 bits a ``charlson-acci`` request fills
a plaintext alone, so these tests give the custodian a 3072-bit key, generated once per session.
"""

from __future__ import annotations

from typing import Any

import phe
import pytest

from datadomain import custodian
from securecompute.keys import generate_keypair

KeyPair = tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]


@pytest.fixture(scope="session")
def packing_keypair() -> KeyPair:
    return generate_keypair(3072)


@pytest.fixture
def packing_key(world: Any, packing_keypair: KeyPair, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the test's ``world`` (its population), make the 3072-bit key pair the custodian's active key
    (the population's 2048-bit key retires)."""
    monkeypatch.setattr(custodian, "generate_keypair", lambda bits: packing_keypair)
    custodian.keypair_create(bits=3072)


def answered(result: dict[str, Any], ref: str) -> list[bool]:
    """The signs the custodian sent back for ``ref``."""
    reply = result[ref]
    answer = getattr(reply, "answer", reply)
    assert answer["request_id"] == ref  # every request gets an answer of the same shape
    return list(answer["positive"])
