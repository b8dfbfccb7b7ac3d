"""Attacks on sign-in: locking everyone out behind the proxy, choosing one's address with X-Forwarded-For,
guessing one account from many addresses, and asking the admin sign-in whether a password is right.

The proxy attacks run against a real gunicorn whose trusted proxy is 127.0.0.1: requests sent from
127.0.0.1 with an X-Forwarded-For play the proxy forwarding a client; requests sent from 127.0.0.2 play
someone who reaches gunicorn directly and forges the header (the whole of 127.0.0.0/8 is this machine's).
"""

from __future__ import annotations

import http.client
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client, RequestFactory

from insurer_portal import lockout
from insurer_portal.services import portal_user_create
from ops.client_address import client_address
from tenants.models import InsurerUser
from tests.factories import InsurerFactory, UserFactory
from tests.gunicorn import Server, gunicorn_server
from tests.staff import authenticator, current_code

PASSWORD = "signin-attack-password-1"
PROXY = "127.0.0.1"  # TRUSTED_PROXIES of the server below
DIRECT = "127.0.0.2"  # reaches gunicorn without going through the proxy
REAL_USER_ADDRESS = "198.51.100.7"
ATTACKER_ADDRESS = "203.0.113.66"
LOCKED = "Too many failed sign-in attempts. Try again in"
WRONG = "The user name or password is not correct."


@pytest.fixture(autouse=True)
def _no_failures_counted() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: str


@dataclass
class Browser:
    """One browser with its cookies, connecting from ``source`` and sending ``forwarded_for`` (as the
    proxy at 127.0.0.1 would, or as a forger elsewhere does)."""

    server: Server
    source: str = PROXY
    forwarded_for: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, form: Mapping[str, str] | None = None) -> Answer:
        headers = {"Accept-Language": "en"}
        if self.forwarded_for is not None:
            headers["X-Forwarded-For"] = self.forwarded_for
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.server.port, timeout=30, source_address=(self.source, 0)
        )
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
            for raw in response.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(raw).items():
                    self.cookies[name] = morsel.value
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, text)
        finally:
            connection.close()

    def sign_in(self, username: str, password: str) -> Answer:
        if "csrftoken" not in self.cookies:
            self.request("GET", "/portal/login/")
        form = {"csrfmiddlewaretoken": self.cookies["csrftoken"], "username": username, "password": password}
        return self.request("POST", "/portal/login/", form)

    def sign_out(self) -> None:
        self.request("POST", "/portal/logout/", {"csrfmiddlewaretoken": self.cookies["csrftoken"]})


@pytest.fixture
def real_user(transactional_db: None) -> InsurerUser:
    return portal_user_create(
        insurer=InsurerFactory(slug="signin-life"), username="uw-real", email="uw-real@example.com",
        role=InsurerUser.Role.UNDERWRITER, password=PASSWORD,
    )  # fmt: skip


@pytest.fixture
def server(transactional_db: None, tmp_path: Path) -> Iterator[Server]:
    with gunicorn_server(tmp_path, extra_env={"TRUSTED_PROXIES": PROXY}, threads=16) as running:
        yield running


def spray(browser: Browser, attempts: int) -> list[int]:
    """Sign-ins with random account names and passwords: the statuses the attacker saw."""
    return [browser.sign_in(f"user-{secrets.token_hex(4)}", secrets.token_urlsafe(12)).status for _ in range(attempts)]


def signed_in(browser: Browser, answer: Answer) -> bool:
    return answer.status == 302 and browser.request("GET", "/portal/").status == 200


def test_an_attacker_behind_the_proxy_locks_out_only_itself(server: Server, real_user: InsurerUser) -> None:
    attacker = Browser(server, forwarded_for=ATTACKER_ADDRESS)
    statuses = spray(attacker, 35)
    # The attacker's own address is locked by its 30th failure (PORTAL_ADDRESS_LOCKOUT_FAILURES) ...
    assert statuses == [200] * 29 + [429] * 6
    # ... and so is every name it tries from there, the real user's included.
    refused = attacker.sign_in("uw-real", PASSWORD)
    assert refused.status == 429
    assert LOCKED in refused.body
    assert 0 < int(refused.headers["retry-after"]) <= 15 * 60

    # The real user, behind the same proxy but from their own address, signs in at once.
    user = Browser(server, forwarded_for=REAL_USER_ADDRESS)
    assert signed_in(user, user.sign_in("uw-real", PASSWORD))


def test_guessing_one_account_locks_the_guesser_not_the_account(server: Server, real_user: InsurerUser) -> None:
    attacker = Browser(server, forwarded_for=ATTACKER_ADDRESS)
    statuses = [attacker.sign_in("uw-real", f"guess-{n}").status for n in range(7)]
    assert statuses == [200] * 4 + [429] * 3  # the fifth failure locks (uw-real, attacker's address)
    user = Browser(server, forwarded_for=REAL_USER_ADDRESS)
    assert signed_in(user, user.sign_in("uw-real", PASSWORD))


def test_guesses_sent_at_once_are_checked_no_more_than_the_limit(settings: Any) -> None:
    """Twenty guesses at one account from one address at once: a lock that only read the count before the
    password check would let all twenty be checked, since none has failed yet when the others look."""
    start = threading.Barrier(20)

    def guess(n: int) -> str:
        request = RequestFactory().post("/portal/login/", REMOTE_ADDR=ATTACKER_ADDRESS)
        start.wait()
        if lockout.attempt_begin(request, "uw-real").locked:
            return "refused"
        time.sleep(0.3)  # checking the password: PBKDF2 takes about this long in production
        lockout.failure_record(request, "uw-real")
        return "checked"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = Counter(pool.map(guess, range(20)))
    assert outcomes == {"checked": settings.PORTAL_LOCKOUT_FAILURES, "refused": 20 - settings.PORTAL_LOCKOUT_FAILURES}


def test_guessing_from_many_addresses_stops_strangers_but_not_the_users_own_browser(
    server: Server, real_user: InsurerUser
) -> None:
    user = Browser(server, forwarded_for=REAL_USER_ADDRESS)
    assert signed_in(user, user.sign_in("uw-real", PASSWORD))  # the browser is now known to the account
    user.sign_out()
    # A botnet: every guess from another address, so no (account, address) pair reaches its limit.
    guesses = [
        Browser(server, forwarded_for=f"203.0.113.{n}").sign_in("uw-real", f"guess-{n}").status for n in range(1, 23)
    ]
    assert guesses == [200] * 19 + [429] * 3  # the 20th failure: PORTAL_ACCOUNT_THROTTLE_FAILURES
    stranger = Browser(server, forwarded_for="192.0.2.50")
    assert stranger.sign_in("uw-real", PASSWORD).status == 429  # a browser new to the account waits ...
    forger = Browser(server, forwarded_for="192.0.2.51", cookies={"signin_device": "uw-real:forged"})
    assert forger.sign_in("uw-real", PASSWORD).status == 429  # (a cookie it made up itself is not signed)
    assert signed_in(user, user.sign_in("uw-real", PASSWORD))  # ... the user's own browser does not


def test_an_untrusted_peer_cannot_choose_its_address_with_x_forwarded_for(
    server: Server, real_user: InsurerUser
) -> None:
    # Cause a lock-out: a direct peer claims to be the real user's address and fails their account ...
    framer = Browser(server, source=DIRECT, forwarded_for=REAL_USER_ADDRESS)
    assert [framer.sign_in("uw-real", f"guess-{n}").status for n in range(6)] == [200] * 4 + [429] * 2
    # ... which locked the framer's own address for that account, not the real user's.
    user = Browser(server, forwarded_for=REAL_USER_ADDRESS)
    assert signed_in(user, user.sign_in("uw-real", PASSWORD))

    # Dodge the lock-out: a new forged address (or a forged chain ending in the proxy) for every try.
    dodger = Browser(server, source=DIRECT)
    statuses = []
    for n in range(30):
        dodger.forwarded_for = f"192.0.2.{n + 1}" if n % 2 else f"192.0.2.{n + 1}, {PROXY}"
        statuses.append(dodger.sign_in(f"user-{secrets.token_hex(4)}", "guess").status)
    # Every try counted against 127.0.0.2 itself: with the framer's five, the 25th is the address's 30th.
    assert statuses == [200] * 24 + [429] * 6
    # Behind the proxy nothing was counted: not the forged addresses, not the proxy's own.
    assert Browser(server, forwarded_for="192.0.2.2").sign_in("nobody", "guess").status == 200
    assert Browser(server).sign_in("nobody", "guess").status == 200
    assert signed_in(user, user.sign_in("uw-real", PASSWORD))


# --- the client address, and what the cache keeps --------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "proxies", "expected"),
    [
        ("203.0.113.9", "", [], "203.0.113.9"),  # no proxy: the peer
        ("203.0.113.9", "198.51.100.1", [], "203.0.113.9"),  # no proxy: any header ignored
        ("127.0.0.1", "198.51.100.1", ["127.0.0.1"], "198.51.100.1"),  # the proxy appended the client
        ("127.0.0.1", "6.6.6.6, 198.51.100.1", ["127.0.0.1"], "198.51.100.1"),  # what the client sent is ignored
        ("127.0.0.1", '"6.6.6.6, 198.51.100.1', ["127.0.0.1"], "198.51.100.1"),  # an unclosed quote too
        ("127.0.0.1", "garbage, [2001:db8::7]:443", ["127.0.0.1"], "2001:db8::7"),
        ("127.0.0.1", "::ffff:198.51.100.1", ["127.0.0.1/32"], "198.51.100.1"),
        ("127.0.0.1", "", ["127.0.0.1"], "127.0.0.1"),  # the proxy itself (a health check)
        ("127.0.0.1", "not-an-address", ["127.0.0.1"], "127.0.0.1"),
        ("127.0.0.2", "198.51.100.1", ["127.0.0.1"], "127.0.0.2"),  # not the proxy: header ignored
        ("127.0.0.2", "198.51.100.1, 127.0.0.1", ["127.0.0.1"], "127.0.0.2"),  # a forged chain ending in it
        ("10.0.0.5", "198.51.100.1, 10.0.5.9", ["10.0.5.0/24", "10.0.0.5"], "198.51.100.1"),  # two hops
        ("10.0.0.5", "198.51.100.1", ["10.0.5.0/24", "10.0.0.5"], "10.0.0.5"),  # a hop missing: the peer
        ("10.0.0.5", "6.6.6.6, 198.51.100.1, 203.0.113.3", ["10.0.5.0/24", "10.0.0.5"], "10.0.0.5"),
    ],
)
def test_the_client_address_believes_only_what_trusted_proxies_wrote(
    peer: str, forwarded_for: str, proxies: list[str], expected: str, settings: Any
) -> None:
    settings.TRUSTED_PROXIES = proxies
    request = RequestFactory().get("/", REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=forwarded_for)
    assert client_address(request) == expected


def test_rotating_ipv6_addresses_within_a_network_counts_as_one_client(db: None) -> None:
    portal_user_create(
        insurer=InsurerFactory(slug="six-life"), username="uw-six", email="uw-six@example.com",
        role=InsurerUser.Role.UNDERWRITER, password=PASSWORD,
    )  # fmt: skip
    statuses = [
        Client(REMOTE_ADDR=f"2001:db8:77:1::{n:x}").post("/portal/login/", {"username": "uw-six", "password": "x"})
        for n in range(1, 7)
    ]
    assert [response.status_code for response in statuses] == [200] * 4 + [429] * 2
    elsewhere = Client(REMOTE_ADDR="2001:db8:77:2::1")  # another /64
    assert elsewhere.post("/portal/login/", {"username": "uw-six", "password": PASSWORD}).status_code == 302


def test_the_cache_holds_no_account_name_or_address(db: None) -> None:
    portal_user_create(
        insurer=InsurerFactory(slug="quiet-life"), username="uw-quiet", email="uw-quiet@example.com",
        role=InsurerUser.Role.UNDERWRITER, password=PASSWORD,
    )  # fmt: skip
    attacker = Client(REMOTE_ADDR=ATTACKER_ADDRESS)
    for _ in range(6):
        attacker.post("/portal/login/", {"username": "uw-quiet", "password": "guess"})
    keys = cache_keys()
    assert len(keys) >= 3, "the failures were counted in the cache"
    assert not [key for key in keys if "uw-quiet" in key or ATTACKER_ADDRESS in key]


def cache_keys() -> list[str]:
    """Every key of the lock-out's counters in the cache this process uses (Redis or its own memory)."""
    backend: Any = cache._cache  # type: ignore[attr-defined]
    if isinstance(backend, dict):  # LocMemCache
        return [str(key) for key in backend if "signin-failures" in str(key)]
    client = backend.get_client(None, write=False)
    return [key.decode() for key in client.scan_iter("*signin-failures*")]


# --- the bureau admin ----------------------------------------------------------------------------------

ADMIN_LOGIN = "/admin/login/?next=/admin/"
STAFF_PASSWORD = "a-long-test-password"


def refusal(response: Any) -> str:
    notes = re.findall(r'<p class="errornote">\s*(.*?)\s*</p>', response.content.decode(), flags=re.S)
    return " ".join(notes)


@pytest.fixture
def chief(db: None) -> User:
    return UserFactory(username="chief", is_staff=True, is_superuser=True)


def test_the_admin_sign_in_never_confirms_a_password(chief: User, client: Client, settings: Any) -> None:
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    device = authenticator(chief)
    wrong_code = f"{(int(current_code(device)) + 1) % 1_000_000:06d}"
    wrong_password = client.post(
        ADMIN_LOGIN, {"username": "chief", "password": "not-the-password", "otp_token": wrong_code},
        HTTP_ACCEPT_LANGUAGE="en",
    )  # fmt: skip
    right_password = client.post(
        ADMIN_LOGIN, {"username": "chief", "password": STAFF_PASSWORD, "otp_token": wrong_code},
        HTTP_ACCEPT_LANGUAGE="en",
    )  # fmt: skip
    staff_without_code = UserFactory(username="deputy", is_staff=True)  # no authenticator enrolled
    no_authenticator = client.post(
        ADMIN_LOGIN, {"username": staff_without_code.username, "password": STAFF_PASSWORD, "otp_token": "123456"},
        HTTP_ACCEPT_LANGUAGE="en",
    )  # fmt: skip
    not_staff = UserFactory(username="portal-person")
    not_staff_answer = client.post(
        ADMIN_LOGIN, {"username": not_staff.username, "password": STAFF_PASSWORD, "otp_token": "123456"},
        HTTP_ACCEPT_LANGUAGE="en",
    )  # fmt: skip
    answers = [wrong_password, right_password, no_authenticator, not_staff_answer]
    assert {answer.status_code for answer in answers} == {200}
    assert {refusal(answer) for answer in answers} == {"The user name, password or code is not correct."}
    assert client.get("/admin/").status_code == 302


def test_the_admin_sign_in_locks_out_like_the_portal(chief: User, client: Client, settings: Any) -> None:
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    device = authenticator(chief)
    wrong_code = f"{(int(current_code(device)) + 1) % 1_000_000:06d}"
    # Wrong passwords and a right password with a wrong code count alike: five in all lock the account here.
    for password in ("guess-1", STAFF_PASSWORD, "guess-2", STAFF_PASSWORD):
        client.post(ADMIN_LOGIN, {"username": "chief", "password": password, "otp_token": wrong_code})
    fifth = client.post(
        ADMIN_LOGIN, {"username": "chief", "password": "guess-3", "otp_token": wrong_code}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert fifth.status_code == 429
    assert refusal(fifth) == "Too many failed sign-in attempts. Try again in 15 minutes."
    both_right = {"username": "chief", "password": STAFF_PASSWORD, "otp_token": current_code(device)}
    locked = client.post(ADMIN_LOGIN, both_right, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert locked.status_code == 429
    assert 0 < int(locked["Retry-After"]) <= settings.PORTAL_LOCKOUT_SECONDS
    assert refusal(locked) == "登录失败次数过多。请在 15 分钟后重试。"
    assert client.get("/admin/").status_code == 302
    # A colleague at another address is not locked out, and neither is chief from there.
    elsewhere = Client(REMOTE_ADDR="198.51.100.30")
    assert elsewhere.post(ADMIN_LOGIN, both_right).status_code == 302
    assert elsewhere.get("/admin/").status_code == 200


@pytest.mark.parametrize(
    ("peer", "counted"),
    [
        ("::ffff:198.51.100.1", "198.51.100.1"),  # a dual-stack socket's IPv4 client: its own IPv4, not ::/64
        ("::ffff:198.51.100.2", "198.51.100.2"),
        ("2001:db8:77:1::9", "2001:db8:77:1::/64"),
        ("198.51.100.1", "198.51.100.1"),
    ],
)
def test_every_lock_out_counts_the_same_client_address(peer: str, counted: str, settings: Any) -> None:
    """The portal, admin and resident sign-ins share one reading of the address, so IPv4 clients seen
    through a dual-stack socket never share one counter (they would all fall in ::/64)."""
    from insurer_portal.lockout import counted_address

    settings.TRUSTED_PROXIES = []
    assert counted_address(RequestFactory().get("/", REMOTE_ADDR=peer)) == counted
