from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from insurer_portal.models import Insurer

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent(settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEMO_ADMIN_PASSWORD = "a-demo-password-1"
    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())
    assert get_user_model().objects.filter(is_superuser=True).count() == 1
    assert Insurer.objects.count() == 1


def test_seed_demo_refuses_without_a_password(settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEMO_ADMIN_PASSWORD = ""
    with pytest.raises(CommandError, match="DEMO_ADMIN_PASSWORD"):
        call_command("seed_demo", stdout=StringIO())


def test_create_insurer() -> None:
    out = StringIO()
    call_command("create_insurer", "ping-life", "--name", "Ping Life", stdout=out)
    assert Insurer.objects.get(slug="ping-life").name == "Ping Life"
    assert "ping-life" in out.getvalue()


def test_create_insurer_rejects_duplicates_and_bad_slugs() -> None:
    call_command("create_insurer", "ping-life", "--name", "Ping Life", stdout=StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_insurer", "ping-life", "--name", "Again", stdout=StringIO())
    with pytest.raises(CommandError, match="slug"):
        call_command("create_insurer", "Bad Slug!", "--name", "Bad", stdout=StringIO())
