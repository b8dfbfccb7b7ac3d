"""Reading deployment settings from the environment (12-factor).

Secrets may also come from a file named by ``<NAME>_FILE`` (Docker and Kubernetes secrets), as
healthchecks' ``envsecret`` does. A secret with no value fails loudly at start-up unless a
development default is allowed (``DEBUG`` on).
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()


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
