"""Limits on resident sign-in, in the pattern of insurer_portal.lockout: counters in the shared cache,
keyed by an HMAC (SECRET_KEY) of a scope and its values, so the cache holds no resident ID or address;
an attempt counts when it begins, so codes sent at once cannot all be checked before the failures count.

``person-address`` (RESIDENT_CODE_FAILURES): wrong codes for one resident from one address: the lock.
``address`` (RESIDENT_ADDRESS_FAILURES): wrong codes from one address over every resident.
``sends-person`` / ``sends-address`` (RESIDENT_CODE_SENDS, RESIDENT_ADDRESS_SENDS): codes asked for. With
at most RESIDENT_CODE_FAILURES guesses per code and RESIDENT_CODE_SENDS codes per person in a window, a
guesser from anywhere gets at most 25 tries in a million per window.
All are kept RESIDENT_LOCKOUT_SECONDS after their last count.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.crypto import salted_hmac

from insurer_portal.counters import counter_add, counter_subtract

_SALT = "residents.lockout.counter"


def _key(scope: str, *values: str) -> str:
    return "resident-lock:" + salted_hmac(_SALT, "\x1f".join((scope, *values)), algorithm="sha256").hexdigest()


def _limits(subject_key: str, address: str, kind: str) -> list[tuple[str, int]]:
    if kind == "send":
        return [
            (_key("sends-person", subject_key), int(settings.RESIDENT_CODE_SENDS)),
            (_key("sends-address", address), int(settings.RESIDENT_ADDRESS_SENDS)),
        ]
    return [
        (_key("person-address", subject_key, address), int(settings.RESIDENT_CODE_FAILURES)),
        (_key("address", address), int(settings.RESIDENT_ADDRESS_FAILURES)),
    ]


def attempt_begin(*, subject_key: str, address: str, kind: str) -> bool:
    """Count an attempt (``send`` a code, or ``check`` one) before it is made; False when it is over a
    limit, and then it is not made at all."""
    timeout = int(settings.RESIDENT_LOCKOUT_SECONDS)
    allowed = True
    for key, limit in _limits(subject_key, address, kind):
        if counter_add(key, 1, timeout=timeout) > limit:
            allowed = False
    return allowed


def check_succeeded(*, subject_key: str, address: str) -> None:
    """A right code gives back its count against the person and address (not the address's total)."""
    counter_subtract(_key("person-address", subject_key, address), 1)
