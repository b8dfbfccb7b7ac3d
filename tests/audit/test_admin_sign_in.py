"""Bureau staff sign in to the admin with a password and a TOTP code from an enrolled authenticator."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEntry
from tests.factories import UserFactory
from tests.staff import authenticator, current_code, otp_login

pytestmark = pytest.mark.django_db
LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "a-long-test-password"


@pytest.fixture
def superuser() -> User:
    return UserFactory(username="chief", is_staff=True, is_superuser=True)


def test_a_password_alone_does_not_open_the_admin(superuser: User, client: Client) -> None:
    client.force_login(superuser)  # signed in, but not verified by a second factor
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert client.get("/admin/underwriting/underwritingrequest/").status_code == 302


def test_the_sign_in_form_asks_for_the_code(client: Client) -> None:
    page = client.get(LOGIN, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'name="otp_token"' in page
    assert "staff_totp_setup" in page


def test_a_staff_member_without_an_authenticator_is_refused_like_a_wrong_password(
    superuser: User, client: Client
) -> None:
    """The refusal must not confirm the password, so the page says in general how staff enrol."""
    response = client.post(
        LOGIN, {"username": "chief", "password": PASSWORD, "otp_token": "123456"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "The user name, password or code is not correct." in page
    assert "staff_totp_setup" in page
    assert "staff_totp_setup chief" not in page
    assert client.get("/admin/").status_code == 302


def test_a_wrong_code_is_refused_and_audited(superuser: User, client: Client) -> None:
    wrong = f"{(int(current_code(authenticator(superuser))) + 1) % 1_000_000:06d}"
    response = client.post(LOGIN, {"username": "chief", "password": PASSWORD, "otp_token": wrong})
    assert response.status_code == 200
    assert client.get("/admin/").status_code == 302
    failed = AuditEntry.objects.get(action="auth.otp_failed")
    assert (failed.actor, failed.detail) == ("chief", {"area": "admin"})
    assert not AuditEntry.objects.filter(action="auth.sign_in").exists()


def test_password_and_code_open_the_admin_and_the_sign_in_is_audited(superuser: User, client: Client) -> None:
    code = current_code(authenticator(superuser))
    response = client.post(LOGIN, {"username": "chief", "password": PASSWORD, "otp_token": code})
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    signed_in = AuditEntry.objects.get(action="auth.sign_in")
    assert (signed_in.actor, signed_in.detail) == ("chief", {"area": "admin", "staff": True})
    assert code not in json.dumps(list(AuditEntry.objects.values("detail")))


def test_the_verified_login_helper_gives_a_verified_session(superuser: User) -> None:
    assert otp_login(Client(), superuser).get("/admin/").status_code == 200


def test_staff_totp_setup_enrols_an_authenticator_and_prints_its_key() -> None:
    staffer = UserFactory(username="new-auditor", is_staff=True)
    out = StringIO()
    call_command("staff_totp_setup", "new-auditor", "--operator", "ops-oncall", stdout=out)
    device = TOTPDevice.objects.get(user=staffer, confirmed=True)
    text = out.getvalue()
    assert "otpauth://totp/" in text
    assert device.config_url in text
    entry = AuditEntry.objects.get(action="staff.totp_enrol")
    assert (entry.actor, entry.target_id) == ("ops-oncall", str(staffer.pk))
    assert device.key not in json.dumps(entry.detail)
    client = Client()
    code = current_code(device)
    assert client.post(LOGIN, {"username": "new-auditor", "password": PASSWORD, "otp_token": code}).status_code == 302


def test_staff_totp_setup_keeps_an_existing_authenticator_unless_told_to_replace() -> None:
    staffer = UserFactory(username="keeper", is_staff=True)
    first = authenticator(staffer)
    with pytest.raises(CommandError):
        call_command("staff_totp_setup", "keeper", "--no-qr", stdout=StringIO())
    call_command("staff_totp_setup", "keeper", "--replace", "--no-qr", stdout=StringIO())
    assert list(TOTPDevice.objects.filter(user=staffer).values_list("pk", flat=True)) != [first.pk]
    assert TOTPDevice.objects.filter(user=staffer).count() == 1


def test_staff_totp_setup_refuses_someone_who_is_not_staff() -> None:
    UserFactory(username="portal-person")
    with pytest.raises(CommandError):
        call_command("staff_totp_setup", "portal-person", stdout=StringIO())
    assert not TOTPDevice.objects.exists()


def test_the_demo_superuser_signs_in_with_the_code_portal_totp_code_prints(settings: Any, client: Client) -> None:
    from ops import demo

    settings.DEBUG = True  # portal_totp_code is for development only
    settings.DEMO_ADMIN_PASSWORD = "admin-demo-2026"
    seeded = demo.Seeded()
    admin_user = demo.superuser_ensure(seeded)
    assert any("TOTP key" in line for line in seeded.lines)
    demo.superuser_ensure(demo.Seeded())  # idempotent: still one authenticator
    assert TOTPDevice.objects.filter(user=admin_user).count() == 1
    out = StringIO()
    call_command("portal_totp_code", admin_user.username, stdout=out)
    response = client.post(
        LOGIN, {"username": admin_user.username, "password": "admin-demo-2026", "otp_token": out.getvalue().strip()}
    )
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
