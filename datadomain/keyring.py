"""Public halves of the custodian's Paillier keys, for encryption and scoring anywhere in the domain.

Public keys are not secret; the private halves stay sealed on disk and only ``datadomain.custodian``
opens them.
"""

from __future__ import annotations

from functools import lru_cache

import phe
from django.conf import settings

from datadomain.errors import DomainError
from datadomain.models import CustodianKey
from securecompute.keys import public_key_from_json


def active_public_key() -> tuple[str, phe.PaillierPublicKey]:
    """The key new ciphertexts are made under: (key id, public key).

    With ``CUSTODIAN_KEY_ID`` set, the active key must be that one: a key row planted in the database
    (whoever could write it) would otherwise have every new feature vector encrypted to its owner.
    """
    key_id = active_key_id()
    if key_id is None:
        raise DomainError("no_active_key", "No active custodian key: run `manage.py create_keypair`.")
    pinned = str(getattr(settings, "CUSTODIAN_KEY_ID", "") or "")
    if pinned and key_id != pinned:
        raise DomainError(
            "key_not_pinned",
            f"The active custodian key {key_id[:16]} is not the one CUSTODIAN_KEY_ID pins ({pinned[:16]}): "
            "after an approved rotation, set CUSTODIAN_KEY_ID to the new key id.",
        )
    return key_id, public_key(key_id)


def active_key_id() -> str | None:
    """The active key's id, or None when there is none. Read every time (one indexed query): a
    remembered id could name a key that a rotation has retired meanwhile."""
    return (
        CustodianKey.objects.filter(status=CustodianKey.Status.ACTIVE)
        .order_by("-created_at")
        .values_list("key_id", flat=True)
        .first()
    )


def public_key(key_id: str) -> phe.PaillierPublicKey:
    return _public_key(key_id)


@lru_cache(maxsize=8)
def _public_key(key_id: str) -> phe.PaillierPublicKey:
    # A key id is a fingerprint of the modulus, so a cached entry can never be stale.
    row = CustodianKey.objects.filter(key_id=key_id).values_list("public_key_json", flat=True).first()
    if row is None:
        raise DomainError("unknown_key", f"Unknown custodian key {key_id}.")
    return public_key_from_json(row)
