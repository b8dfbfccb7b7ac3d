"""Sign-in lock-out for the insurer portal and the bureau admin: a django-axes handler (``AXES_HANDLER``).

django-axes refuses a locked-out sign-in before the password is even checked (``axes.backends.AxesBackend``
in AUTHENTICATION_BACKENDS), counts failed sign-ins through Django's ``user_login_failed`` signal and turns a
locked-out answer into a 429 (``AxesMiddleware``, :func:`lockout_response`). This handler decides what is
counted and when a sign-in is locked. The client address comes from ``ops.client_address`` (X-Forwarded-For
only from TRUSTED_PROXIES), so behind the proxy each client has its own address, not the proxy's.

Policy: every failed password, every wrong one-time code and every refusal after a correct password
(not staff, not a member of an insurer, no authenticator) counts once against three counters, each kept
for PORTAL_LOCKOUT_SECONDS after its last failure:

``account-address`` (PORTAL_LOCKOUT_FAILURES, 5)
    One account name from one client address. This is the lock: guessing one password (or code) from one
    place stops after five tries. An attacker elsewhere cannot touch it, so no one can lock out someone else.
``address`` (PORTAL_ADDRESS_LOCKOUT_FAILURES, 30)
    One client address over all account names: a few passwords sprayed over many accounts.
``account`` (PORTAL_ACCOUNT_THROTTLE_FAILURES, 20)
    One account name over all addresses: guessing one password from many addresses (a botnet).

The last two would let an attacker deny service (a shared office address, or any account name), so they
are softer: they do not apply to a browser that has signed in to that account before, which carries a
signed "known device" cookie naming it (OWASP, "Slow brute force protection using device cookies"). The
real user keeps signing in from their usual browser while the account or their network is under attack;
only strangers wait. The (account, address) lock applies to everyone.

An attempt counts when it begins, before its password or code is checked, and is given back if it was
right: twenty guesses sent at once cannot all be checked while the first failures are still being counted.

Counters are keyed by an HMAC (SECRET_KEY) of a scope and its values, so the cache holds no account name
or address, and keys of different scopes cannot collide (django-axes' own cache keys concatenate values
with no separator: user "a1" at 2.3.4.5 and user "a" at 12.3.4.5 share one). IPv6 clients count per /64,
since one host usually holds a whole /64. Account names count case-insensitively (NFKC, case-folded).

A sign-in counts as complete, which clears its (account, address) counter and remembers the browser, only
after the last factor: a correct password alone resets nothing, or a code could be guessed five at a time
between passwords.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

from axes.handlers.base import AbstractAxesHandler, AxesBaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.signals import user_locked_out
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import salted_hmac
from django.utils.translation import ngettext

from insurer_portal.counters import counter_add, counter_subtract

logger = logging.getLogger(__name__)

DEVICE_COOKIE = "signin_device"
DEVICE_COOKIE_MAX_AGE = 90 * 24 * 3600
_DEVICE_SALT = "insurer_portal.lockout.device"
_DEVICE_ACCOUNTS = 5  # accounts one browser is remembered for (a shared office computer)
_KEY_SALT = "insurer_portal.lockout.counter"
_UNTIL = ":until"
_STATE = "signin_lock_state"  # the last lock state worked out for a request
_BEGUN = "signin_attempt_begun"  # (account name, {counter key: count}) of the attempt a request is making


@dataclass(frozen=True)
class LockState:
    """Seconds until this client may try this account again; 0 when it is not locked out."""

    retry_after: int = 0

    @property
    def locked(self) -> bool:
        return self.retry_after > 0

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.retry_after / 60))
        return ngettext(
            "Too many failed sign-in attempts. Try again in %(minutes)d minute.",
            "Too many failed sign-in attempts. Try again in %(minutes)d minutes.",
            minutes,
        ) % {"minutes": minutes}


@dataclass(frozen=True)
class _Counter:
    scope: str
    key: str
    limit: int
    spares_known_devices: bool


def normalise_username(username: object) -> str:
    return unicodedata.normalize("NFKC", str(username or "")).strip().casefold()


def username_of(request: HttpRequest, credentials: dict[str, Any] | None = None) -> str:
    """``AXES_USERNAME_CALLABLE``: the account name tried, normalised."""
    if credentials and "username" in credentials:
        return normalise_username(credentials["username"])
    return normalise_username(request.POST.get("username", ""))


def counted_address(request: HttpRequest) -> str:
    """The client address as lock-outs count it: from TRUSTED_PROXIES only (ops.client_address), an
    IPv4-mapped IPv6 address as its IPv4, any other IPv6 address as its /64."""
    AxesProxyHandler.update_request(request)  # sets axes_ip_address (ops.client_address) once per request
    return _address_counted(str(getattr(request, "axes_ip_address", None) or ""))


def _address_counted(raw: str) -> str:
    try:
        address = ipaddress.ip_address(raw.strip())
    except ValueError:
        return raw
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _key(scope: str, *values: str) -> str:
    digest = salted_hmac(_KEY_SALT, json.dumps([scope, *values]), algorithm="sha256").hexdigest()
    return f"signin-failures:{scope}:{digest}"


def _counters(request: HttpRequest, username: str) -> list[_Counter]:
    address = counted_address(request)
    pair, by_address, by_account = (
        _key("account-address", username, address), _key("address", address), _key("account", username)
    )  # fmt: skip
    return [
        _Counter("account-address", pair, settings.PORTAL_LOCKOUT_FAILURES, spares_known_devices=False),
        _Counter("address", by_address, settings.PORTAL_ADDRESS_LOCKOUT_FAILURES, spares_known_devices=True),
        _Counter("account", by_account, settings.PORTAL_ACCOUNT_THROTTLE_FAILURES, spares_known_devices=True),
    ]


# --- the known-device cookie --------------------------------------------------------------------------


def _account_tag(username: str) -> str:
    return salted_hmac(_DEVICE_SALT, username, algorithm="sha256").hexdigest()[:32]


def _known_accounts(request: HttpRequest) -> list[str]:
    value = request.get_signed_cookie(DEVICE_COOKIE, default="", salt=_DEVICE_SALT, max_age=DEVICE_COOKIE_MAX_AGE)
    return [tag for tag in str(value).split(",") if tag][:_DEVICE_ACCOUNTS]


def _remember_device(request: HttpRequest, response: HttpResponse, username: str) -> None:
    tag = _account_tag(username)
    tags = [tag, *(known for known in _known_accounts(request) if known != tag)][:_DEVICE_ACCOUNTS]
    response.set_signed_cookie(
        DEVICE_COOKIE, ",".join(tags), salt=_DEVICE_SALT, max_age=DEVICE_COOKIE_MAX_AGE,
        secure=settings.SESSION_COOKIE_SECURE, httponly=True, samesite="Lax",
    )  # fmt: skip


# --- lock state ---------------------------------------------------------------------------------------


def lock_state(request: HttpRequest, username: str) -> LockState:
    """Whether this client may try ``username`` now (and if not, for how long it must wait)."""
    username = normalise_username(username)
    counters = _counters(request, username)
    known = _account_tag(username) in _known_accounts(request)
    values = cache.get_many([key for counter in counters for key in (counter.key, counter.key + _UNTIL)])
    now = time.time()
    waits = [
        max(1, math.ceil(float(values.get(counter.key + _UNTIL, now + settings.PORTAL_LOCKOUT_SECONDS)) - now))
        for counter in counters
        if int(values.get(counter.key, 0)) >= counter.limit and not (known and counter.spares_known_devices)
    ]
    state = LockState(retry_after=max(waits, default=0))
    setattr(request, _STATE, state)
    return state


def attempt_begin(request: HttpRequest, username: str) -> LockState:
    """Begin one sign-in attempt (a password or a code) of ``username``: it counts at once, before it is
    checked, so that concurrent attempts cannot all pass the lock while their failures are still unknown
    (N at once from a limit of L check exactly L). A locked-out attempt is refused and counts nothing. The
    count stands if the attempt fails (:func:`failure_record`) and is given back if it passes
    (:func:`attempt_passed`)."""
    username = normalise_username(username)
    seconds = int(settings.PORTAL_LOCKOUT_SECONDS)
    counters = _counters(request, username)
    known = _account_tag(username) in _known_accounts(request)
    counts = {counter.key: counter_add(counter.key, 1, timeout=seconds) for counter in counters}
    if any(counts[c.key] > c.limit and not (known and c.spares_known_devices) for c in counters):
        for key in counts:
            counter_subtract(key, 1)
        return lock_state(request, username)
    setattr(request, _BEGUN, (username, counts))
    return LockState()


def attempt_passed(request: HttpRequest) -> None:
    """The attempt begun on this request was right: it no longer counts as a failure."""
    begun = getattr(request, _BEGUN, None)
    if begun is not None:
        delattr(request, _BEGUN)
        for key in begun[1]:
            counter_subtract(key, 1)


def failure_record(request: HttpRequest, username: str) -> LockState:
    """Count one failed sign-in of ``username`` from this client (the attempt begun on this request, or a
    new count); the lock state after it.

    A request found locked already is not counted, so a lock ends PORTAL_LOCKOUT_SECONDS after the failure
    that set it, however often the client keeps trying."""
    username = normalise_username(username)
    seconds = int(settings.PORTAL_LOCKOUT_SECONDS)
    counters = _counters(request, username)
    begun = getattr(request, _BEGUN, None)
    if begun is not None and begun[0] == username:
        delattr(request, _BEGUN)
        counts = begun[1]
    else:
        counts = {counter.key: counter_add(counter.key, 1, timeout=seconds) for counter in counters}
    until = time.time() + seconds
    reached = []
    for counter in counters:
        cache.touch(counter.key, seconds)  # kept for PORTAL_LOCKOUT_SECONDS after the latest failure
        if counts.get(counter.key, 0) >= counter.limit:
            cache.set(counter.key + _UNTIL, until, timeout=seconds)
            reached.append(counter.scope)
    state = lock_state(request, username)
    if state.locked:
        logger.warning("sign-in locked out: %s at its limit", ", ".join(reached) or "a counter")
        request.axes_locked_out = True  # type: ignore[attr-defined]  # AxesMiddleware answers 429
        user_locked_out.send("axes", request=request, username=username, ip_address=counted_address(request))
    return state


def refusal_state(request: HttpRequest, username: str) -> LockState:
    """After ``authenticate`` refused a sign-in: the lock it met or reached (not locked: a plain failure)."""
    if not getattr(request, "axes_locked_out", False):
        return LockState()
    return getattr(request, _STATE, None) or lock_state(request, username)


def signin_succeeded(request: HttpRequest, response: HttpResponse, username: str) -> None:
    """Every factor passed: clear this client's count for the account and remember the browser.

    The address and account counts stay until they expire, so one good sign-in cannot wipe out a spray
    over other accounts or a botnet's guesses at this one."""
    attempt_passed(request)
    username = normalise_username(username)
    pair = _counters(request, username)[0]
    cache.delete_many([pair.key, pair.key + _UNTIL])
    _remember_device(request, response, username)


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: object = None
) -> HttpResponse:
    """``AXES_LOCKOUT_CALLABLE``: the page the view rendered (which says how long to wait) as a 429 with
    Retry-After. Redirects (the code step sends a locked-out user back to the sign-in page) pass as they are."""
    state = getattr(request, _STATE, None) or LockState(int(settings.PORTAL_LOCKOUT_SECONDS))
    if isinstance(original_response, HttpResponse) and 300 <= original_response.status_code < 400:
        return original_response
    response = original_response if isinstance(original_response, HttpResponse) else HttpResponse(state.message)
    response.status_code = 429
    response["Retry-After"] = str(state.retry_after)
    return response


class SignInLockHandler(AbstractAxesHandler, AxesBaseHandler):  # type: ignore[misc]  # axes has no type hints
    """The django-axes handler (``AXES_HANDLER``) with the policy above, on the shared cache."""

    def is_locked(self, request: Any, credentials: dict[str, Any] | None = None) -> bool:
        """AxesBackend asks once per ``authenticate()``, before the password is checked: the attempt begins."""
        return attempt_begin(request, username_of(request, credentials)).locked

    def get_failures(self, request: Any, credentials: dict[str, Any] | None = None) -> int:
        counters = _counters(request, username_of(request, credentials))
        return max((int(value) for value in cache.get_many([c.key for c in counters]).values()), default=0)

    def user_login_failed(self, sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
        if request is None:
            logger.error("a failed sign-in without a request cannot be counted")
            return
        if getattr(request, "axes_locked_out", False):
            return  # refused by the lock itself, before the password was checked: not counted again
        if self.is_whitelisted(request, credentials):
            return
        failure_record(request, username_of(request, credentials))

    def user_logged_in(self, sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
        """The password was right: the attempt does not count. Nothing is reset, though: while a code is
        still due the sign-in is not complete (see signin_succeeded)."""
        if request is not None:
            attempt_passed(request)

    def user_logged_out(self, sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
        """Nothing to count."""

    def reset_attempts(
        self, *, ip_address: str | None = None, username: str | None = None, ip_or_username: bool = False
    ) -> int:
        """For ``manage.py axes_reset_username`` / ``axes_reset_ip`` / ``axes_reset_ip_username``: the
        counters that name what is given (an account-address lock needs both)."""
        name = normalise_username(username) if username else ""
        address = _address_counted(ip_address) if ip_address else ""
        keys = [
            *([_key("account", name)] if name else []),
            *([_key("address", address)] if address else []),
            *([_key("account-address", name, address)] if name and address else []),
        ]
        present = cache.get_many(keys)
        cache.delete_many([*keys, *(key + _UNTIL for key in keys)])
        return len(present)
