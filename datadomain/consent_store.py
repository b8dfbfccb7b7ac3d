"""The domain's store of signed consent forms: files named by their SHA-256, kept only inside the domain.

Insurer-facing tables hold the hash alone (``Consent.artifact_sha256`` and the request); the bureau finds
the form for a consent record by that hash. Content addressing makes storing the same form twice harmless.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from django.conf import settings


def _path_for(digest: str) -> Path:
    return Path(settings.CONSENT_STORE_DIR) / digest[:2] / digest


def consent_artifact_store(*, content: bytes) -> str:
    """Keep a signed consent form and return its SHA-256 (hex), the value that goes with the request."""
    digest = hashlib.sha256(content).hexdigest()
    path = _path_for(digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(content)
        partial.chmod(0o600)
        partial.replace(path)  # atomic: a reader never sees half a file
    return digest


def consent_artifact_exists(*, digest: str) -> bool:
    return len(digest) == 64 and _path_for(digest.lower()).is_file()


def consent_artifact_delete(*, digest: str) -> bool:
    """Delete a stored consent form (erasure on request); True when there was one."""
    if len(digest) != 64:
        return False
    path = _path_for(digest.lower())
    existed = path.is_file()
    path.unlink(missing_ok=True)
    return existed
