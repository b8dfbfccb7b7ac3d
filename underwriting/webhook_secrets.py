"""Webhook signing secrets at rest: encrypted, readable only by processes holding the key.

An endpoint's signing secret must be read back in clear to sign each delivery (HMAC needs the secret itself,
so it cannot be hashed like an API key). It is stored as a Fernet token (AES-128-CBC with HMAC-SHA256,
``cryptography``) under a key derived with HKDF-SHA256 (RFC 5869) from ``WEBHOOK_SECRET_KEY``, or from
``SECRET_KEY`` when that is empty, with an ``info`` label of its own, so the derived key is independent of
every other use of ``SECRET_KEY``. A database dump, a backup or a zone that reads the table without the key
learns no secret.

Rotation of the key: put the old value in ``WEBHOOK_SECRET_KEY_FALLBACKS`` (with a derived key, Django's
``SECRET_KEY_FALLBACKS`` is read too), deploy, run ``manage.py reencrypt_webhook_secrets``, then drop the
old value. Tokens are decrypted with any of the keys and always written with the first.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

_INFO = b"underwriting webhook signing secrets v1"


class SecretUnreadableError(Exception):
    """No configured key opens the stored secret (WEBHOOK_SECRET_KEY changed without a fallback)."""


def _key_material() -> tuple[str, ...]:
    dedicated = str(getattr(settings, "WEBHOOK_SECRET_KEY", "") or "")
    fallbacks = [str(value) for value in getattr(settings, "WEBHOOK_SECRET_KEY_FALLBACKS", []) if value]
    if dedicated:
        return (dedicated, *fallbacks)
    return (str(settings.SECRET_KEY), *fallbacks, *(str(v) for v in getattr(settings, "SECRET_KEY_FALLBACKS", [])))


@lru_cache(maxsize=4)
def _box(material: tuple[str, ...]) -> MultiFernet:
    keys = []
    for value in material:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(value.encode())
        keys.append(Fernet(base64.urlsafe_b64encode(derived)))
    return MultiFernet(keys)


def seal(secret: str) -> str:
    """The token to store for ``secret``."""
    return _box(_key_material()).encrypt(secret.encode()).decode("ascii")


def unseal(token: str) -> str:
    """The secret in ``token``; raises :class:`SecretUnreadableError` when no configured key opens it."""
    try:
        return _box(_key_material()).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as exc:
        raise SecretUnreadableError("no configured key opens this webhook secret") from exc


def reseal(token: str) -> str:
    """``token`` encrypted again under the current key (after a key rotation)."""
    try:
        return _box(_key_material()).rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError) as exc:
        raise SecretUnreadableError("no configured key opens this webhook secret") from exc
