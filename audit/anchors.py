"""Audit anchors: the chain head (position, hash, time), signed, in files written once.

An anchor is what someone who can rewrite the database cannot rewrite: the file goes to a place the
application may add to but not change (``AUDIT_ANCHOR_DIR`` on append-only or WORM storage, or copied off
the host), and it is signed with Ed25519 (RFC 8032) by a key only the exporting process holds
(``AUDIT_ANCHOR_SIGNING_KEY``). Verification needs only the public half (``AUDIT_ANCHOR_PUBLIC_KEYS``), so
an auditor's or the admin's verifier can check anchors but never make one. The hash chain's HMAC key
could not do this: whoever verifies the chain holds it, and could then forge any anchor.

Files are created with ``O_EXCL`` and never opened for writing again; reading is careful with whatever
the directory may hold (another process's file, a symbolic link, a FIFO, megabytes of junk): a file that
is not a small regular file with a valid signature is reported, never trusted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.utils.translation import gettext as _

FORMAT = 1
PATTERN = "audit-anchor-*.json"
# An anchor is a few hundred bytes; anything much larger is not one of ours.
MAX_BYTES = 4096
_FIELDS = ("format", "chain_seq", "hash", "exported_at", "key_id")


class AnchorError(Exception):
    """An anchor file that cannot be trusted, or a key that cannot be used; the message is for staff."""


@dataclass(frozen=True)
class Anchor:
    name: str  # the file's name, to point staff at it
    chain_seq: int
    hash: str
    exported_at: datetime
    signed: bool  # False: written before anchors were signed (format 0); it still must match the chain


# --- keys ------------------------------------------------------------------------------------------


def _raw_key(value: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value.strip())
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise AnchorError(_("%(setting)s must be 64 hex digits (32 bytes).") % {"setting": what})
    return raw


def signing_key() -> Ed25519PrivateKey:
    value = str(settings.AUDIT_ANCHOR_SIGNING_KEY or "")
    if not value:
        raise AnchorError(_("AUDIT_ANCHOR_SIGNING_KEY is not set: audit anchors cannot be signed."))
    return Ed25519PrivateKey.from_private_bytes(_raw_key(value, "AUDIT_ANCHOR_SIGNING_KEY"))


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes_raw().hex()


def key_id(key: Ed25519PublicKey) -> str:
    """A short name for a public key, written into each anchor so a verifier picks the right key."""
    return hashlib.sha256(key.public_bytes_raw()).hexdigest()[:16]


def public_keys() -> dict[str, Ed25519PublicKey]:
    """The keys anchors may be signed with: ``AUDIT_ANCHOR_PUBLIC_KEYS`` (old keys stay listed after a
    change of signing key), or the signing key's own public half when that setting is empty."""
    values = [str(value) for value in settings.AUDIT_ANCHOR_PUBLIC_KEYS if str(value).strip()]
    if values:
        keys = [Ed25519PublicKey.from_public_bytes(_raw_key(v, "AUDIT_ANCHOR_PUBLIC_KEYS")) for v in values]
    elif settings.AUDIT_ANCHOR_SIGNING_KEY:
        keys = [signing_key().public_key()]
    else:
        keys = []
    return {key_id(key): key for key in keys}


# --- writing ---------------------------------------------------------------------------------------


def _signed_bytes(payload: dict[str, Any]) -> bytes:
    return orjson.dumps({name: payload[name] for name in _FIELDS}, option=orjson.OPT_SORT_KEYS)


def anchor_document(*, chain_seq: int, head_hash: str, exported_at: datetime, key: Ed25519PrivateKey) -> bytes:
    payload: dict[str, Any] = {
        "format": FORMAT,
        "chain_seq": chain_seq,
        "hash": head_hash,
        "exported_at": exported_at.isoformat(),
        "key_id": key_id(key.public_key()),
    }
    payload["signature"] = base64.b64encode(key.sign(_signed_bytes(payload))).decode()
    return orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_once(folder: Path, name: str, data: bytes) -> Path:
    """Create ``folder/name`` with ``data``; an existing file (or link) of that name is never touched."""
    folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    path = folder / name
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(path, flags, 0o444)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    _fsync_folder(folder)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make the new directory entry durable too (a crash must not lose an anchor the log says was written)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems (network mounts) refuse fsync on a directory; the file itself is synced
    finally:
        os.close(descriptor)


# --- reading ---------------------------------------------------------------------------------------


def anchor_paths(locations: list[Path]) -> list[Path]:
    """Anchor files in the given directories, and the given files themselves."""
    found: list[Path] = []
    for location in locations:
        if location.is_dir():
            found += sorted(location.glob(PATTERN))
        elif location.exists() or location.is_symlink():
            found.append(location)
        else:
            raise AnchorError(_("There is no anchor file at %(path)s.") % {"path": location})
    return found


def _read_small_regular_file(path: Path) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        raise AnchorError(
            _("Anchor %(name)s cannot be opened (%(reason)s).") % {"name": path.name, "reason": exc.strerror}
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise AnchorError(_("Anchor %(name)s is not a regular file.") % {"name": path.name})
        data = os.read(descriptor, MAX_BYTES + 1)
    finally:
        os.close(descriptor)
    if len(data) > MAX_BYTES:
        raise AnchorError(_("Anchor %(name)s is too large to be an anchor.") % {"name": path.name})
    return data


def _parse(name: str, data: bytes) -> tuple[dict[str, Any], datetime]:
    malformed = AnchorError(_("Anchor %(name)s is not a valid anchor (position, hash and time).") % {"name": name})
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise malformed from None
    if not isinstance(document, dict):
        raise malformed
    seq, digest = document.get("chain_seq"), document.get("hash")
    if type(seq) is not int or seq < 0 or not isinstance(digest, str) or len(digest) != 64:
        raise malformed
    try:
        int(digest, 16)
        exported_at = datetime.fromisoformat(str(document.get("exported_at")))
    except ValueError:
        raise malformed from None
    if exported_at.tzinfo is None:
        exported_at = exported_at.replace(tzinfo=UTC)
    return document, exported_at


def _check_signature(name: str, document: dict[str, Any], keys: dict[str, Ed25519PublicKey]) -> None:
    if document.get("format") != FORMAT or any(field not in document for field in _FIELDS):
        raise AnchorError(_("Anchor %(name)s is not in the signed anchor format.") % {"name": name})
    key = keys.get(str(document["key_id"]))
    if key is None:
        raise AnchorError(
            _("Anchor %(name)s is signed with a key that is not in AUDIT_ANCHOR_PUBLIC_KEYS.") % {"name": name}
        )
    try:
        signature = base64.b64decode(str(document.get("signature", "")), validate=True)
        key.verify(signature, _signed_bytes(document))
    except (InvalidSignature, binascii.Error, ValueError):
        raise AnchorError(
            _("Anchor %(name)s has a signature that does not match its content.") % {"name": name}
        ) from None


def anchor_read(path: Path, keys: dict[str, Ed25519PublicKey]) -> Anchor:
    """The anchor in ``path``, its signature checked; ``AnchorError`` says what is wrong with it.

    Anchors written before signing existed (neither ``signature`` nor ``format``) are read as unsigned:
    they can still show that the chain was cut short, but never vouch for anything."""
    document, exported_at = _parse(path.name, _read_small_regular_file(path))
    signed = "signature" in document or "format" in document
    if signed:
        _check_signature(path.name, document, keys)
    return Anchor(
        name=path.name,
        chain_seq=int(document["chain_seq"]),
        hash=str(document["hash"]).lower(),
        exported_at=exported_at,
        signed=signed,
    )
