"""The exceptions ``securecompute`` raises; callers map them to their own error codes once."""

from __future__ import annotations


class SecureComputeError(Exception):
    """Base class of every error raised by ``securecompute``."""


class KeyTooShortError(SecureComputeError, ValueError):
    """A Paillier modulus shorter than the 2048-bit minimum (NIST SP 800-57 Part 1 Rev. 5, Table 2)."""


class PlaintextOverflowError(SecureComputeError, ValueError):
    """A plaintext outside the range the public key can encode."""


class KekFormatError(SecureComputeError, ValueError):
    """A key encryption key that is not 32 bytes in one of the accepted spellings."""


class SealedKeyError(SecureComputeError):
    """Base class of the errors raised while loading a sealed private key."""


class WrongKekError(SealedKeyError):
    """The sealed key file was sealed under another key encryption key."""


class CorruptKeyFileError(SealedKeyError):
    """The sealed key file is unreadable, truncated or was altered after sealing."""


class InsecureKeyFileError(SealedKeyError):
    """The sealed key file can be read by other users (its mode is not 0600)."""


class ProtocolError(SecureComputeError):
    """A malformed or inconsistent query, answer or tiering state."""


class InvalidCiphertextError(ProtocolError):
    """A ciphertext outside ``(0, n^2)`` or sharing a factor with ``n``."""


class WrongKeyError(ProtocolError):
    """A message addressed to another Paillier key (its key id does not match)."""
