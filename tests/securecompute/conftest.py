"""Key pairs are generated once per session: 2048 and 3072 bits, the two sizes the platform allows."""

from __future__ import annotations

import phe
import pytest

from securecompute.keys import generate_keypair

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
