"""Deployment checks on the secrets (``manage.py check --deploy``; tests/deploy runs it on production settings).

config.settings.production already refuses, at start-up, a secret published in this repository; these
checks say the same of any settings module, and add what is weak rather than public: a secret too short
for its job, a KEK in no accepted form, a database password from the examples, and no ``CUSTODIAN_KEY_ID``
pin (without it a key row planted in the database would receive every new ciphertext).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from config.settings.env import public_secret_reason

SECRETS = ("SECRET_KEY", "SUBJECT_PEPPER", "AUDIT_KEY", "CUSTODIAN_KEK")
# Characters at least: 32 hex digits are 128 bits, and an HMAC key should hold as many bits as the
# security wanted (NIST SP 800-107 Rev. 1, Section 5.3.4). SECRET_KEY's length is Django's check W009.
MIN_LENGTHS = {"SUBJECT_PEPPER": 32, "AUDIT_KEY": 32}
RANDOM_HINT = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


@register(Tags.security, deploy=True)
def check_secrets(
    *, app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None, **kwargs: Any
) -> list[CheckMessage]:
    messages = [message for name in SECRETS for message in _secret_messages(name, _setting(name))]
    messages += _kek_messages(_setting("CUSTODIAN_KEK"))
    messages += _database_messages()
    if not _setting("CUSTODIAN_KEY_ID"):
        messages.append(
            Warning(
                "CUSTODIAN_KEY_ID is not set: new ciphertexts go to whichever key the database calls active.",
                hint="Set CUSTODIAN_KEY_ID to the active key's id (admin: Data domain > Custodian keys).",
                id="ops.W003",
            )
        )
    return messages


def _setting(name: str) -> str:
    return str(getattr(settings, name, "") or "")


def _secret_messages(name: str, value: str) -> list[CheckMessage]:
    reason = public_secret_reason(value) if value else ""
    if reason:
        hint = f"Set {name} to a new random value ({RANDOM_HINT})."
        return [Error(f"{name} is {reason}.", hint=hint, id="ops.E001")]
    minimum = MIN_LENGTHS.get(name, 0)
    if value and len(value) < minimum:
        message = f"{name} has {len(value)} characters; use at least {minimum}."
        return [Warning(message, hint=RANDOM_HINT, id="ops.W001")]
    return []


def _kek_messages(value: str) -> list[CheckMessage]:
    """Only the custodian has a KEK (empty elsewhere); when given, it must be one the custodian accepts."""
    if not value or public_secret_reason(value):
        return []
    from datadomain import custodian  # the one module that may parse a KEK (securecompute.private)
    from securecompute.errors import KekFormatError

    try:
        custodian.kek_parse(value.encode())
    except KekFormatError:
        return [
            Warning(
                "CUSTODIAN_KEK is not 32 bytes as 64 hex digits or base64; the custodian will refuse it.",
                hint='python -c "import secrets; print(secrets.token_hex(32))"',
                id="ops.W002",
            )
        ]
    return []


def _database_messages() -> list[CheckMessage]:
    return [
        Warning(
            f"The password of database {alias!r} is {public_secret_reason(str(config['PASSWORD']))}.",
            hint="Give the database role a random password (POSTGRES_PASSWORD, DATABASE_URL or DATABASE_PASSWORD).",
            id="ops.W004",
        )
        for alias, config in settings.DATABASES.items()
        if config.get("PASSWORD") and public_secret_reason(str(config["PASSWORD"]))
    ]
