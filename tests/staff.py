"""Signing bureau staff in to the admin, which needs a password and a TOTP code.

``otp_login`` is to the admin what ``Client.force_login`` is to a password form: it skips typing the
factors, not checking them. The session it makes holds a real, confirmed authenticator of the user, so
django-otp's middleware verifies it on every request exactly as after a real sign-in.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice


def authenticator(user: User) -> TOTPDevice:
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    return device or TOTPDevice.objects.create(user=user, name="test authenticator", confirmed=True)


def current_code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):0{device.digits}d}"


def otp_login(client: Client, user: User) -> Client:
    """Sign ``user`` in with both factors verified (an authenticator is enrolled when missing)."""
    device = authenticator(user)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client
