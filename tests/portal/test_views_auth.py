"""Sign-in: password, two factors (required for insurer admins), lock-out, reset, session expiry."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from tenants.models import Insurer, InsurerUser
from tests.portal.conftest import PASSWORD, code_for, member

pytestmark = pytest.mark.django_db


def test_pages_send_anonymous_visitors_to_sign_in(client: Client) -> None:
    response = client.get("/portal/requests/")
    assert response.status_code == 302
    assert response["Location"].startswith("/portal/login/?next=/portal/requests/")


def test_home_links_to_the_portal(client: Client) -> None:
    assert 'href="/portal/"' in client.get("/").content.decode()


def test_underwriter_signs_in_with_a_password(underwriter: InsurerUser, client: Client) -> None:
    response = client.post("/portal/login/", {"username": "uw-ping", "password": PASSWORD})
    assert response.status_code == 302
    page = client.get("/portal/")
    assert page.status_code == 200
    assert "Ping Life" in page.content.decode()


def test_wrong_password_is_refused_without_saying_which_part(underwriter: InsurerUser, client: Client) -> None:
    response = client.post("/portal/login/", {"username": "uw-ping", "password": "nope"}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert "The user name or password is not correct." in response.content.decode()


def test_user_of_no_insurer_cannot_sign_in(client: Client, django_user_model: Any) -> None:
    django_user_model.objects.create_user(username="staff", password=PASSWORD)
    response = client.post("/portal/login/", {"username": "staff", "password": PASSWORD})
    assert response.status_code == 200
    assert client.get("/portal/").status_code == 302


def test_locks_out_after_repeated_failures(underwriter: InsurerUser, client: Client, settings: Any) -> None:
    settings.PORTAL_LOCKOUT_FAILURES = 3
    for _ in range(3):
        client.post("/portal/login/", {"username": "uw-ping", "password": "wrong"})
    response = client.post("/portal/login/", {"username": "UW-PING", "password": PASSWORD}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= settings.PORTAL_LOCKOUT_SECONDS
    assert "Too many failed sign-in attempts. Try again in 15 minutes." in response.content.decode()
    assert client.get("/portal/").status_code == 302
    again = {"username": "uw-ping", "password": PASSWORD}
    chinese = client.post("/portal/login/", again, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "登录失败次数过多。请在 15 分钟后重试。" in chinese.content.decode()


def test_many_accounts_tried_from_one_address_lock_that_address(
    insurer: Insurer, underwriter: InsurerUser, settings: Any
) -> None:
    settings.PORTAL_LOCKOUT_FAILURES = 5
    settings.PORTAL_ADDRESS_LOCKOUT_FAILURES = 3
    sprayer = Client(REMOTE_ADDR="203.0.113.7")
    for name in ("a-ping", "b-ping", "c-ping"):  # one wrong password each: no account reaches its limit
        sprayer.post("/portal/login/", {"username": name, "password": "Spring2026!"})
    response = sprayer.post("/portal/login/", {"username": "uw-ping", "password": PASSWORD}, HTTP_ACCEPT_LANGUAGE="en")
    assert "Too many failed sign-in attempts" in response.content.decode()
    assert sprayer.get("/portal/").status_code == 302
    colleague = Client(REMOTE_ADDR="198.51.100.20")  # the account itself is not locked
    assert colleague.post("/portal/login/", {"username": "uw-ping", "password": PASSWORD}).status_code == 302
    assert colleague.get("/portal/").status_code == 200


def test_a_successful_sign_in_does_not_reset_its_address(underwriter: InsurerUser, settings: Any) -> None:
    settings.PORTAL_ADDRESS_LOCKOUT_FAILURES = 3
    visitor = Client(REMOTE_ADDR="203.0.113.8")
    visitor.post("/portal/login/", {"username": "x-ping", "password": "wrong"})
    visitor.post("/portal/login/", {"username": "y-ping", "password": "wrong"})
    assert visitor.post("/portal/login/", {"username": "uw-ping", "password": PASSWORD}).status_code == 302
    visitor.post("/portal/logout/")
    visitor.post("/portal/login/", {"username": "z-ping", "password": "wrong"})  # the third from this address
    stranger = Client(REMOTE_ADDR="203.0.113.8")  # another browser at the same address
    assert stranger.post("/portal/login/", {"username": "uw-ping", "password": PASSWORD}).status_code == 429
    # The browser that signed in to uw-ping before is known to it: the address lock does not stop it.
    assert visitor.post("/portal/login/", {"username": "uw-ping", "password": PASSWORD}).status_code == 302


def test_admin_without_authenticator_must_enrol_before_any_page(
    insurer: Insurer, client: Client, settings: Any
) -> None:
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # no back-off delay after the wrong code below
    admin = member(insurer, "new-admin", InsurerUser.Role.ADMIN)
    response = client.post("/portal/login/", {"username": "new-admin", "password": PASSWORD})
    assert response["Location"].startswith("/portal/account/two-factor/")
    assert client.get("/portal/requests/")["Location"].startswith("/portal/account/two-factor/")
    page = client.get("/portal/account/two-factor/")
    assert "<svg" in page.content.decode()
    device = TOTPDevice.objects.get(user=admin.user, confirmed=False)
    assert client.post("/portal/account/two-factor/", {"token": "000000"}).status_code == 200
    response = client.post("/portal/account/two-factor/", {"token": code_for(device)})
    assert response.status_code == 302
    assert client.get("/portal/admin/users/").status_code == 200


def test_user_with_authenticator_must_give_a_code(insurer_admin: InsurerUser, client: Client) -> None:
    response = client.post("/portal/login/", {"username": "admin-ping", "password": PASSWORD})
    assert response["Location"].startswith("/portal/login/verify/")
    assert client.get("/portal/")["Location"].startswith("/portal/login/verify/")
    device = TOTPDevice.objects.get(user=insurer_admin.user)
    assert client.post("/portal/login/verify/", {"token": code_for(device)}).status_code == 302
    assert client.get("/portal/").status_code == 200


def test_wrong_codes_count_towards_the_lock_out(insurer_admin: InsurerUser, client: Client, settings: Any) -> None:
    settings.PORTAL_LOCKOUT_FAILURES = 2
    client.post("/portal/login/", {"username": "admin-ping", "password": PASSWORD})
    client.post("/portal/login/verify/", {"token": "000000"})
    response = client.post("/portal/login/verify/", {"token": "000001"})
    assert response["Location"] == "/portal/login/"
    response = client.post("/portal/login/", {"username": "admin-ping", "password": PASSWORD})
    assert response.status_code == 429  # locked: the right password is refused too


def test_underwriter_may_turn_two_factor_on_and_off(uw_client: Client, underwriter: InsurerUser) -> None:
    uw_client.get("/portal/account/two-factor/")
    device = TOTPDevice.objects.get(user=underwriter.user)
    uw_client.post("/portal/account/two-factor/", {"token": code_for(device)})
    assert TOTPDevice.objects.get(user=underwriter.user).confirmed
    uw_client.post("/portal/account/two-factor/remove/")
    assert not TOTPDevice.objects.filter(user=underwriter.user).exists()


def test_admin_cannot_turn_two_factor_off(admin_client: Client, insurer_admin: InsurerUser) -> None:
    admin_client.post("/portal/account/two-factor/remove/")
    assert TOTPDevice.objects.filter(user=insurer_admin.user).exists()


def test_password_reset_mails_a_link_that_sets_a_new_password(underwriter: InsurerUser, client: Client) -> None:
    response = client.post("/portal/password-reset/", {"email": "uw-ping@example.com"})
    assert response["Location"] == "/portal/password-reset/sent/"
    assert len(mail.outbox) == 1
    link = next(line for line in mail.outbox[0].body.splitlines() if "/portal/password-reset/" in line)
    path = link.split("testserver", 1)[1]
    form = client.get(path, follow=True)
    new = "a-brand-new-password-42"
    response = client.post(form.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert response["Location"] == "/portal/password-reset/complete/"
    assert client.post("/portal/login/", {"username": "uw-ping", "password": new}).status_code == 302


def test_sessions_end_after_inactivity(settings: Any) -> None:
    assert settings.SESSION_SAVE_EVERY_REQUEST is True
    assert settings.SESSION_COOKIE_AGE <= 60 * 60


def test_sign_out(uw_client: Client) -> None:
    uw_client.post("/portal/logout/")
    assert uw_client.get("/portal/").status_code == 302
