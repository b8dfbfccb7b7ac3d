"""Signed consent forms sent through the API (consent mode ``form``): checked, kept in the data domain's
consent store by SHA-256, audited. The insurer then names the form by that SHA-256 in its request's
``consent.artifact_sha256``; admission finds it in the store (``consent_artifact_exists``).

What is accepted is judged from the file's own first bytes, never from the name or the type the client
declares: a PDF (``%PDF-``), a JPEG (``FF D8 FF``) or a PNG (its 8-byte signature), 1 byte to
``CONSENT_ARTIFACT_MAX_BYTES``. A declared type that contradicts the content is refused as well, so a
client learns of its mistake rather than storing something it did not mean to. Nothing of the content is
logged or echoed; the audit entry holds the insurer, the digest, the size and the type.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from audit.services import audit_record
from datadomain.consent_store import consent_artifact_store
from underwriting.errors import UnderwritingError

SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)
CONTENT_TYPES = tuple(content_type for _, content_type in SIGNATURES)
# Other spellings clients send for the same types.
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "application/x-pdf": "application/pdf"}


@dataclass(frozen=True)
class StoredArtifact:
    sha256: str
    size: int
    content_type: str


def content_type_of(content: bytes) -> str | None:
    """The accepted type the content's first bytes show, or None."""
    for signature, content_type in SIGNATURES:
        if content.startswith(signature):
            return content_type
    return None


def _invalid(message: str) -> UnderwritingError:
    return UnderwritingError("invalid_input", "The consent form was not accepted.", fields={"file": [message]})


def normalise_declared_type(declared: str) -> str:
    """A declared media type without parameters, lower case, with common aliases folded ('' if none)."""
    value = declared.split(";", 1)[0].strip().lower()
    return _ALIASES.get(value, value)


@transaction.atomic
def consent_artifact_upload(*, insurer_id: int, content: bytes, declared_type: str = "") -> StoredArtifact:
    """Check and keep one signed consent form for an insurer; returns its SHA-256 (the value its requests
    give as ``consent.artifact_sha256``). The same form sent twice is kept once and answers alike."""
    limit = int(settings.CONSENT_ARTIFACT_MAX_BYTES)
    if not content:
        raise _invalid("The file is empty.")
    if len(content) > limit:
        raise _invalid(f"The file is larger than {limit} bytes.")
    content_type = content_type_of(content)
    if content_type is None:
        raise _invalid("Send a PDF, JPEG or PNG file.")
    declared = normalise_declared_type(declared_type)
    if declared and declared not in ("application/octet-stream", content_type):
        raise _invalid(f"The file is a {content_type} file, not {declared[:60]}.")
    digest = consent_artifact_store(content=content)
    audit_record(
        action="consent.artifact_stored",
        actor=f"insurer:{insurer_id}",
        target_type="consent_artifact",
        target_id=digest,
        detail={"size": len(content), "content_type": content_type},
    )
    return StoredArtifact(sha256=digest, size=len(content), content_type=content_type)
