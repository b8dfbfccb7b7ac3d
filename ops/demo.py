"""The steps of ``manage.py seed_demo``: each adds only what is missing, so it is safe to re-run."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.roles import AUDITOR, KEY_OFFICER, MODEL_REVIEWER, PRIVACY_OFFICER, staff_roles_ensure
from datadomain import custodian
from datadomain.ingest.runner import Ingester
from datadomain.residents import contact_set_for_subject
from datadomain.selectors import subject_is_known
from datadomain.services import subject_key_for
from datadomain.synthetic import generate
from insurer_portal.services import api_key_create, api_key_revoke, insurer_ensure, portal_user_create
from tenants.models import ApiKey, Insurer, InsurerUser
from underwriting.models import ConsentMode, RatingManual, UnderwritingRequest
from underwriting.reference import builtin_manual_paths
from underwriting.services.confirmations import consent_policy_set
from underwriting.services.manuals import manual_approve, manual_upload
from underwriting.services.requests import Applicant, ConsentEvidence, request_submit, submit_item

DEMO_INSURER_SLUG = "demo-life"
DEMO_INSURER_NAME = "示范人寿 Demo Life"
DEMO_UNDERWRITER = "underwriter"
DEMO_INSURER_ADMIN = "insurer-admin"
DEMO_PATIENTS = 300
DEMO_SEED = 2026
BUILTIN_AUTHOR = "builtin-manuals"
# Bureau staff, one account per role (two privacy officers, so that four-eyes flows can be tried end to
# end); each signs in to the admin with the demo password and its own authenticator key.
DEMO_STAFF = [
    ("demo-privacy-1", PRIVACY_OFFICER),
    ("demo-privacy-2", PRIVACY_OFFICER),
    ("demo-reviewer", MODEL_REVIEWER),
    ("demo-key-officer", KEY_OFFICER),
    ("demo-auditor", AUDITOR),
]


@dataclass
class Seeded:
    lines: list[str] = field(default_factory=list)
    # Where `make run` serves (HOST/PORT), for the addresses the summary prints.
    base_url: str = "http://127.0.0.1:8000"

    def say(self, line: str) -> None:
        self.lines.append(line)


def superuser_ensure(seeded: Seeded) -> User:
    """The demo's bureau superuser. The admin asks staff for a TOTP code, so it gets an authenticator too."""
    user = User.objects.filter(username=settings.DEMO_ADMIN_USERNAME).first()
    if user is not None:
        seeded.say(f"Superuser '{user.username}' already exists.")
    else:
        user = User.objects.create_superuser(
            username=settings.DEMO_ADMIN_USERNAME, email="", password=settings.DEMO_ADMIN_PASSWORD
        )
        seeded.say(f"Created superuser '{user.username}' (password: {settings.DEMO_ADMIN_PASSWORD}).")
    secret = _authenticator_key(user)
    seeded.say(
        f"Superuser TOTP key (add it to an authenticator app, or run `manage.py portal_totp_code "
        f"{user.username}` with DEBUG on for the current code): {secret}"
    )
    return user


def _authenticator_key(user: User) -> str:
    """The base32 key of the user's confirmed authenticator, created when missing."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="demo authenticator", confirmed=True)
    return base64.b32encode(device.bin_key).decode()


def staff_ensure(seeded: Seeded) -> None:
    """The bureau's staff roles and one demo account for each (see DEMO_STAFF)."""
    staff_roles_ensure()
    for username, role in DEMO_STAFF:
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User.objects.create_user(username=username, password=settings.DEMO_ADMIN_PASSWORD, is_staff=True)
            user.groups.add(Group.objects.get(name=role))
        seeded.say(f"Staff '{username}' ({role}): TOTP key {_authenticator_key(user)}")


def keypair_ensure(seeded: Seeded) -> None:
    key, created = custodian.keypair_ensure(bits=settings.PAILLIER_KEY_BITS)
    seeded.say(f"{'Created' if created else 'Kept'} custodian key {key.key_id}.")


def population_ensure(
    seeded: Seeded, *, patients: int = DEMO_PATIENTS, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Synthetic FHIR data for ``patients`` residents, generated and ingested once (re-runs add nothing)."""
    folder = Path(settings.VAR_DIR) / "demo-fhir"
    if not (folder / "Patient.ndjson").exists():
        generate(patients=patients, seed=DEMO_SEED, out=folder)
    summary = Ingester(on_progress=progress).run([folder])
    added = sum(summary.inserted.values())
    seeded.say(f"Synthetic records of the demo residents in {folder}: {added} resources added.")
    return folder


@transaction.atomic
def manuals_ensure(seeded: Seeded, approver: User) -> None:
    # The built-in manuals' author: a staff account that cannot sign in (no password, inactive).
    author, _ = User.objects.update_or_create(username=BUILTIN_AUTHOR, defaults={"is_active": False, "is_staff": True})
    for path in builtin_manual_paths():
        text = path.read_text(encoding="utf-8")
        slug = path.stem
        if RatingManual.objects.filter(slug=slug).exists():
            continue
        manual = manual_upload(text=text, uploaded_by=author)
        manual_approve(slug=manual.slug, version=manual.version, approved_by=approver)
        seeded.say(f"Loaded and approved built-in manual {manual.slug} v{manual.version}.")


def insurer_and_users_ensure(seeded: Seeded) -> Insurer:
    insurer, created = insurer_ensure(slug=DEMO_INSURER_SLUG, name=DEMO_INSURER_NAME)
    seeded.say(f"{'Created' if created else 'Kept'} demo insurer '{insurer.slug}'.")
    if not User.objects.filter(username=DEMO_UNDERWRITER).exists():
        user = User.objects.create_user(username=DEMO_UNDERWRITER, password=settings.DEMO_ADMIN_PASSWORD)
        InsurerUser.objects.create(user=user, insurer=insurer, role=InsurerUser.Role.UNDERWRITER)
        seeded.say(f"Created portal user '{DEMO_UNDERWRITER}' (password: {settings.DEMO_ADMIN_PASSWORD}).")
    portal_admin_ensure(seeded, insurer)
    key_file = Path(settings.VAR_DIR) / "demo-api-key.txt"
    if not ApiKey.objects.filter(insurer=insurer, revoked_at__isnull=True).exists() or not key_file.exists():
        # The file is the only copy of the demo key: a lost file means a new key, and the old one is revoked
        # (so re-seeding never runs into the cap on active keys).
        for lost in ApiKey.objects.filter(insurer=insurer, name="demo", revoked_at__isnull=True):
            api_key_revoke(key=lost)
        _, plaintext = api_key_create(insurer=insurer, name="demo")
        key_file.write_text(plaintext + "\n", encoding="utf-8")
        key_file.chmod(0o600)
    seeded.say(f"Demo API key (also in {key_file}): {key_file.read_text(encoding='utf-8').strip()}")
    return insurer


def portal_admin_ensure(seeded: Seeded, insurer: Insurer) -> None:
    """The demo insurer's admin: admins must use two factors, so it gets an authenticator key at once."""
    user = User.objects.filter(username=DEMO_INSURER_ADMIN).first()
    if user is None:
        membership = portal_user_create(
            insurer=insurer, username=DEMO_INSURER_ADMIN, email="admin@demo-life.example",
            role=InsurerUser.Role.ADMIN, password=settings.DEMO_ADMIN_PASSWORD,
        )  # fmt: skip
        user = membership.user
        seeded.say(f"Created insurer admin '{DEMO_INSURER_ADMIN}' (password: {settings.DEMO_ADMIN_PASSWORD}).")
    secret = _authenticator_key(user)
    seeded.say(
        f"Insurer admin TOTP key (add it to an authenticator app, or run `manage.py portal_totp_code "
        f"{DEMO_INSURER_ADMIN}` with DEBUG on): {secret}"
    )


def requests_ensure(seeded: Seeded, insurer: Insurer, folder: Path, *, count: int = 12) -> None:
    """A few requests through the whole pipeline (in-process without a broker), across the manuals."""
    resident_demo_ensure(seeded, folder, index=count)
    if UnderwritingRequest.objects.filter(insurer=insurer).exists():
        return
    manuals = [path.stem for path in builtin_manual_paths()]
    people = _demo_people(folder, count)
    for index, (resident_id, name) in enumerate(people):
        item = submit_item(
            reference=f"DEMO-{index + 1:04d}",
            applicant=Applicant(resident_id=resident_id, name=name),
            manual_slug=manuals[index % len(manuals)],
            consent=ConsentEvidence(
                reference=f"DEMO-CONSENT-{index + 1:04d}",
                signed_at=timezone.now() - timedelta(days=1),
                expires_at=None,
                scope=["underwriting"],
                artifact_sha256="0" * 64,
            ),
        )
        request_submit(insurer_id=insurer.pk, insurer_slug=insurer.slug, item=item)
    seeded.say(f"Submitted {len(people)} demo underwriting requests.")


def _demo_people(folder: Path, count: int) -> list[tuple[str, str]]:
    people: list[tuple[str, str]] = []
    with (folder / "Patient.ndjson").open(encoding="utf-8") as lines:
        for line in lines:
            try:
                patient = json.loads(line)
                resident_id = patient["identifier"][0]["value"]
                name = patient["name"][0]["text"]
            except (ValueError, KeyError, IndexError):
                continue
            if subject_is_known(subject_key_for(resident_id)):
                people.append((resident_id, name))
            if len(people) == count:
                break
    return people


DEMO_RESIDENT_PHONE = "+8613800138000"
DEMO_RESIDENT_INSURER = "demo-health"


def resident_demo_ensure(seeded: Seeded, folder: Path, *, index: int) -> None:
    """A demo resident with a phone number, and a request from an insurer in resident-confirmation mode
    waiting for them, so that the resident page (/residents/) can be tried at once."""
    people = _demo_people(folder, index + 1)
    if len(people) <= index:
        return
    resident_id, name = people[index]
    contact_set_for_subject(subject_key=subject_key_for(resident_id), phone=DEMO_RESIDENT_PHONE)
    insurer, _ = insurer_ensure(slug=DEMO_RESIDENT_INSURER, name="示范健康 Demo Health")
    consent_policy_set(insurer_id=insurer.pk, mode=ConsentMode.RESIDENT, confirmation_hours=72, actor="seed_demo")
    if not UnderwritingRequest.objects.filter(insurer=insurer).exists():
        item = submit_item(
            reference="DEMO-RESIDENT-0001", applicant=Applicant(resident_id=resident_id, name=name),
            manual_slug="charlson-acci",
            consent=ConsentEvidence(
                reference="DEMO-RESIDENT-CONSENT", signed_at=timezone.now(), expires_at=None,
                scope=["underwriting"], artifact_sha256="0" * 64,
            ),
        )  # fmt: skip
        request_submit(insurer_id=insurer.pk, insurer_slug=insurer.slug, item=item)
    where = (
        f"the files under {settings.RESIDENT_MESSAGE_DIR}"
        if settings.RESIDENT_MESSAGE_BACKEND == "file"
        else "this terminal (the server's output)"
    )
    seeded.say(
        f"Resident page: {seeded.base_url}/residents/ - sign in as demo resident {resident_id} ({name}); "
        f"one-time codes appear in {where}, as '[resident message to {DEMO_RESIDENT_PHONE}] ...'."
    )
