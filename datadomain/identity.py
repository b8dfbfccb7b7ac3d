"""Resident identity numbers (GB 11643-1999) and the pseudonymous subject key.

An 18-character resident ID is 6 digits of administrative region (GB/T 2260), 8 digits of birth
date (YYYYMMDD), 3 digits of sequence (odd for men, even for women) and one check character
computed with ISO 7064 MOD 11-2 over the first 17 digits (``X`` stands for 10).
"""

from __future__ import annotations

import hashlib
import hmac
import operator
import unicodedata
from datetime import date

# ISO 7064 MOD 11-2 weights 2^(17-i) mod 11 for positions 0..16, and the check character for
# each remainder of the weighted sum.
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def normalise(value: str) -> str:
    """Strip surrounding whitespace, fold full-width characters (NFKC) and upper-case a lower ``x``."""
    return unicodedata.normalize("NFKC", value).strip().upper()


_DIGIT_OFFSET = 48 * sum(_WEIGHTS)  # the weighted sum of the ASCII codes of "0"


def check_character(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of 17 ASCII digits (weighted sum over the byte values, in C)."""
    total = sum(map(operator.mul, first17.encode("ascii"), _WEIGHTS)) - _DIGIT_OFFSET
    return _CHECK[total % 11]


def birth_date_of(value: str) -> date | None:
    """The birth date encoded in a normalised ID, or ``None`` if it is not a real date."""
    try:
        return date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return None


def validated_birth_date(value: str, today: date | None = None) -> date | None:
    """The birth date of a valid normalised ID (18 characters, a real birth date between 1870 and
    ``today``, the right check character), or ``None`` when the ID is not valid."""
    first17 = value[:17]
    if len(value) != 18 or not first17.isascii() or not first17.isdigit():
        return None
    born = birth_date_of(value)
    if born is None or born.year < 1870 or born > (today or date.today()):
        return None
    return born if check_character(first17) == value[17] else None


def is_valid(value: str) -> bool:
    """True for a normalised 18-character ID with a real birth date and the right check character."""
    return validated_birth_date(value) is not None


def mask(value: str) -> str:
    """``370214********123X``: region kept, birth date and first sequence digit hidden."""
    return mask_normalised(normalise(value))


def mask_normalised(value: str) -> str:
    if len(value) != 18:
        return "*" * len(value)
    return value[:6] + "********" + value[14:]


def subject_key(value: str, pepper: str | bytes) -> str:
    """HMAC-SHA256(pepper, normalised resident ID), hex."""
    key = pepper.encode() if isinstance(pepper, str) else pepper
    return hmac.new(key, normalise(value).encode("ascii"), hashlib.sha256).hexdigest()


def normalise_name(value: str) -> str:
    """Names compare after NFKC, case folding and removal of all whitespace (and middle dots)."""
    folded = unicodedata.normalize("NFKC", value).casefold()
    return "".join(ch for ch in folded if not ch.isspace() and ch not in "·・.")


def names_match(stored: str, given: str) -> bool:
    """Whether ``given`` is the ``stored`` name (after :func:`normalise_name`), compared in constant time:
    how long the comparison takes says nothing about how much of a guessed name was right."""
    return hmac.compare_digest(normalise_name(stored).encode(), normalise_name(given).encode())
