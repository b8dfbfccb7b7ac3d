from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from config.celery import app as celery_app
from datadomain import custodian
from insurer_portal.services import portal_user_create
from tenants.models import Insurer, InsurerUser
from tests.underwriting.conftest import (  # noqa: F401  # fixtures shared with the underwriting tests
    ALICE_ID,
    ALICE_NAME,
    alice,
    approved_manuals,
    author,
    ingest,
    insurer,
    other_insurer,
    reviewer,
)

PASSWORD = "portal-test-password-1"


@pytest.fixture(autouse=True)
def _portal_settings(settings: Any, tmp_path: Path) -> Iterator[None]:
    """Tasks in-process even when REDIS_URL is set (the portal tests need no workers); a clean cache."""
    settings.CONSENT_STORE_DIR = tmp_path / "consent-store"
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    cache.clear()
    yield
    celery_app.conf.task_always_eager = eager
    cache.clear()


def code_for(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def member(company: Insurer, username: str, role: str = InsurerUser.Role.UNDERWRITER) -> InsurerUser:
    return portal_user_create(
        insurer=company, username=username, email=f"{username}@example.com", role=role, password=PASSWORD
    )


@pytest.fixture
def underwriter(insurer: Insurer) -> InsurerUser:  # noqa: F811
    return member(insurer, "uw-ping")


@pytest.fixture
def insurer_admin(insurer: Insurer) -> InsurerUser:  # noqa: F811
    membership = member(insurer, "admin-ping", InsurerUser.Role.ADMIN)
    TOTPDevice.objects.create(user=membership.user, name="app", confirmed=True)
    return membership


@pytest.fixture
def other_underwriter(other_insurer: Insurer) -> InsurerUser:  # noqa: F811
    return member(other_insurer, "uw-other")


def signed_in(user: User) -> Client:
    """A client past both sign-in steps (password, then the code when the user has an authenticator)."""
    client = Client()
    response = client.post("/portal/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:500]
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is not None:
        response = client.post("/portal/login/verify/", {"token": code_for(device)})
        assert response.status_code == 302
    return client


@pytest.fixture
def uw_client(underwriter: InsurerUser) -> Client:
    return signed_in(underwriter.user)


@pytest.fixture
def admin_client(insurer_admin: InsurerUser) -> Client:
    return signed_in(insurer_admin.user)


@pytest.fixture
def other_client(other_underwriter: InsurerUser) -> Client:
    return signed_in(other_underwriter.user)


@pytest.fixture
def custodian_key(db: None) -> Any:
    return custodian.keypair_create(bits=2048)


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks: Callable[..., Any]) -> Callable[..., Any]:
    """Run the pipeline's after-commit tasks (in-process) inside the test's transaction."""
    return lambda: django_capture_on_commit_callbacks(execute=True)
