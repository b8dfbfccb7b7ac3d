"""The bureau staff's admin sign-in: password and a code from their enrolled authenticator (TOTP)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.services import audit_record


class StaffLoginForm(AdminAuthenticationForm):
    """Both factors in one form. A staff member without a confirmed authenticator cannot sign in until an
    operator enrols one (``manage.py staff_totp_setup USER``): enrolling on the web after the password
    alone would let whoever knows a password choose the second factor."""

    otp_token = forms.CharField(
        label=_("Code from your authenticator app"),
        max_length=10,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 10}),
    )

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "no_authenticator": _(
            "Your account has no authenticator yet. Ask an operator to run "
            "“manage.py staff_totp_setup %(username)s” and add the key it shows to your authenticator app."
        ),
        "invalid_token": _("This code is not correct or has expired."),
    }

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)  # active and staff
        device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()
        if device is None:
            raise ValidationError(
                self.error_messages["no_authenticator"],
                code="no_authenticator",
                params={"username": user.get_username()},
            )
        # verify_token also counts failures and backs off (django-otp's throttling).
        if not device.verify_token(self.cleaned_data.get("otp_token") or ""):
            audit_record(
                action="auth.otp_failed",
                actor=user.get_username(),
                target_type="user",
                target_id=str(user.pk),
                detail={"area": "admin"},
            )
            raise ValidationError(self.error_messages["invalid_token"], code="invalid_token")
        # django_otp's user_logged_in handler keeps this device in the session: the user is verified.
        user.otp_device = device
