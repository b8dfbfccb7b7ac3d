"""seed_demo's insurer admin: an admin with a confirmed authenticator, so the demo can sign in."""

from __future__ import annotations

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from ops import demo
from tenants.models import Insurer, InsurerUser

pytestmark = pytest.mark.django_db


def test_demo_admin_has_an_authenticator_and_seeding_twice_adds_nothing(insurer: Insurer) -> None:
    seeded = demo.Seeded()
    demo.portal_admin_ensure(seeded, insurer)
    demo.portal_admin_ensure(seeded, insurer)
    member = InsurerUser.objects.get(user__username=demo.DEMO_INSURER_ADMIN)
    assert member.role == InsurerUser.Role.ADMIN
    assert TOTPDevice.objects.filter(user=member.user, confirmed=True).count() == 1
    assert any("TOTP key" in line for line in seeded.lines)


def test_totp_code_command_prints_the_current_code_only_in_debug(insurer: Insurer, settings: object) -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    from tests.portal.conftest import code_for

    demo.portal_admin_ensure(demo.Seeded(), insurer)
    device = TOTPDevice.objects.get(user__username=demo.DEMO_INSURER_ADMIN)
    settings.DEBUG = True  # type: ignore[attr-defined]
    out = StringIO()
    call_command("portal_totp_code", demo.DEMO_INSURER_ADMIN, stdout=out)
    assert out.getvalue().strip() == code_for(device)
    settings.DEBUG = False  # type: ignore[attr-defined]
    with pytest.raises(CommandError):
        call_command("portal_totp_code", demo.DEMO_INSURER_ADMIN, stdout=StringIO())


def test_demo_staff_cover_every_role_with_two_privacy_officers_for_four_eyes() -> None:
    seeded = demo.Seeded()
    demo.staff_ensure(seeded)
    demo.staff_ensure(seeded)  # a second run adds nothing
    from django.contrib.auth.models import User

    staff = User.objects.filter(username__in=[name for name, _ in demo.DEMO_STAFF])
    assert staff.count() == len(demo.DEMO_STAFF) == 5
    assert all(user.is_staff and not user.is_superuser for user in staff)
    assert all(TOTPDevice.objects.filter(user=user, confirmed=True).count() == 1 for user in staff)
    privacy = [user for user in staff if user.has_perm("datadomain.explain_patient")]
    assert len(privacy) == 2  # one asks for an explanation, the other approves it
    assert [user.username for user in staff if user.has_perm("underwriting.approve_ratingmanual")] == ["demo-reviewer"]
    assert [user.username for user in staff if user.has_perm("datadomain.rotate_custodiankey")] == ["demo-key-officer"]
    auditor = staff.get(username="demo-auditor")
    assert auditor.has_perm("audit.view_auditentry")
    assert not auditor.has_perm("datadomain.change_consent")
    assert sum("TOTP key" in line for line in seeded.lines) == 10


def test_reseeding_after_losing_the_key_file_revokes_the_lost_key(settings: object) -> None:
    from pathlib import Path

    from tenants.models import ApiKey

    key_file = Path(settings.VAR_DIR) / "demo-api-key.txt"  # type: ignore[attr-defined]
    for _ in range(settings.API_MAX_ACTIVE_KEYS + 2):  # type: ignore[attr-defined]
        key_file.unlink(missing_ok=True)
        demo.insurer_and_users_ensure(demo.Seeded())
    active = ApiKey.objects.filter(name="demo", revoked_at__isnull=True)
    assert active.count() == 1
    assert key_file.read_text().strip().split("_")[1] == active.get().prefix
