"""Reading deployment settings from the environment (12-factor).

Secrets may also come from a file named by ``<NAME>_FILE`` (Docker and Kubernetes secrets), as
healthchecks' ``envsecret`` does. A secret with no value fails loudly at start-up unless a
development default is allowed (``DEBUG`` on). Development defaults are public (they are in this
repository), so production refuses them, and anything else published here, at start-up
(:func:`public_secret_reason`); ``manage.py check --deploy`` also flags short secrets (ops/checks.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()

# What the secrets fall back to with DEBUG on. Published in this repository, so never secret.
DEV_DEFAULTS = {
    "SECRET_KEY": "dev-only-insecure-secret-key-change-me",  # nosec B105 - public on purpose, refused in production
    "SUBJECT_PEPPER": "dev-only-subject-pepper",
    "AUDIT_KEY": "dev-only-audit-key",
    "AUDIT_ANCHOR_SIGNING_KEY": "de7a" * 16,
    "CUSTODIAN_KEK": "de70" * 16,
}
# Words of the placeholders in this repository (docker/.env.example's "change-me", the test settings'
# "test-..." values, Django's "django-insecure-" keys) and of values typed to fill a form.
_PLACEHOLDER = re.compile(r"change[-_ ]?me|dev[-_]only|insecure|example|placeholder|^test[-_]|^secret$", re.I)


def secret(name: str, *, dev_default: str | None = None) -> str:
    """Return the secret ``name`` from ``NAME`` or the file at ``NAME_FILE``.

    ``dev_default`` is used only when it is given (callers pass it only when DEBUG is on).
    """
    value: str = env.str(name, default="")
    file_name = env.str(f"{name}_FILE", default="")
    if not value and file_name:
        try:
            value = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE points to an unreadable file: {exc.strerror}") from exc
    if value:
        return value
    if dev_default is not None:
        return dev_default
    raise ImproperlyConfigured(f"{name} must be set (or {name}_FILE) when DEBUG is off.")


def csp_directives(policy: str) -> dict[str, list[str] | bool]:
    """A Content-Security-Policy header value as django-csp's ``DIRECTIVES``: ``"img-src 'self' data:"`` is
    ``{"img-src": ["'self'", "data:"]}``, a directive without sources (``upgrade-insecure-requests``) True."""
    directives: dict[str, list[str] | bool] = {}
    for name, *sources in (part.split() for part in policy.split(";") if part.strip()):
        directives[name.lower()] = sources or True
    return directives


def public_secret_reason(value: str) -> str:
    """Why ``value`` cannot be a production secret, or "" when nothing is known against it: a development
    default, a placeholder, or a short pattern repeated (the test settings' KEK is ``"7e57" * 16``)."""
    if value in DEV_DEFAULTS.values():
        return "a development default published in this repository"
    if _PLACEHOLDER.search(value):
        return "a placeholder from this repository's examples"
    if any(len(value) > size and value == value[:size] * (len(value) // size) for size in range(1, 9)):
        return "a short pattern repeated"
    return ""
