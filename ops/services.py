from __future__ import annotations

import base64
from dataclasses import dataclass

import segno
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.errors import AppError
from audit.services import audit_record
from ops.models import WorkerHeartbeat


@transaction.atomic
def heartbeat_record(*, queue: str, hostname: str) -> WorkerHeartbeat:
    """Record that the worker ``hostname`` consumed a heartbeat from ``queue``. Safe to run twice.

    The row is updated first and created only when missing: a write as the transaction's first statement
    takes the lock at once, so on the embedded SQLite file concurrent heartbeats from several workers wait
    for each other, where a read followed by a write deadlocks (SQLite reports "database is locked" at once).
    """
    now = timezone.now()
    rows = WorkerHeartbeat.objects.filter(queue=queue, hostname=hostname)
    if not rows.update(seen_at=now, beats=F("beats") + 1):
        try:
            with transaction.atomic():
                return WorkerHeartbeat.objects.create(queue=queue, hostname=hostname, seen_at=now, beats=1)
        except IntegrityError:  # another delivery of the same heartbeat created it meanwhile
            rows.update(seen_at=now, beats=F("beats") + 1)
    return rows.get()


class EnrolmentError(AppError):
    """A staff authenticator cannot be enrolled (unknown user, not staff, or one exists already)."""


@dataclass(frozen=True)
class Enrolment:
    secret: str  # base32, what authenticator apps accept when typed in
    uri: str  # otpauth://totp/..., what the QR code holds
    qr: segno.QRCode


@transaction.atomic
def staff_totp_enrol(*, username: str, replace: bool = False, operator: str = "") -> Enrolment:
    """Give a staff member a confirmed TOTP authenticator, the second factor of the admin sign-in.

    Run by an operator who can reach a shell (like ``createsuperuser``): the key is shown once, to be
    added to the staff member's authenticator app in person. Audited; the key never is."""
    user = User.objects.filter(username=username).first()
    if user is None or not user.is_staff:
        raise EnrolmentError("not_staff", f"'{username}' is not a staff user.")
    existing = TOTPDevice.objects.filter(user=user)
    if existing.filter(confirmed=True).exists() and not replace:
        raise EnrolmentError(
            "authenticator_exists", f"'{username}' already has an authenticator; use --replace to issue a new one."
        )
    replaced = existing.count()
    existing.delete()
    device = TOTPDevice.objects.create(user=user, name="staff authenticator", confirmed=True)
    audit_record(
        action="staff.totp_enrol",
        actor=operator or "manage.py",
        target_type="user",
        target_id=str(user.pk),
        detail={"username": username, "replaced": replaced},
    )
    return Enrolment(
        secret=base64.b32encode(device.bin_key).decode(),
        uri=device.config_url,
        qr=segno.make(device.config_url, error="m"),
    )
