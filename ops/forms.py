"""The bureau staff's admin sign-in: password and a code from their enrolled authenticator (TOTP)."""

from __future__ import annotations

from typing import Any, NoReturn

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.services import audit_record
from insurer_portal import lockout


class StaffLoginForm(AdminAuthenticationForm):
    """Both factors in one form, refused with one message whichever was wrong, so the form never confirms
    a password: a wrong password, a wrong code, no authenticator and an account that is not staff read
    alike and each count once towards the sign-in lock-out (insurer_portal.lockout, the portal's). A staff
    member without a confirmed authenticator cannot sign in until an operator enrols one
    (``manage.py staff_totp_setup USER``, which the page explains): enrolling on the web after the password
    alone would let whoever knows a password choose the second factor."""

    otp_token = forms.CharField(
        label=_("Code from your authenticator app"),
        max_length=10,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "size": 10}),
    )

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "invalid_login": _("The user name, password or code is not correct."),
    }

    def get_invalid_login_error(self) -> ValidationError:
        """The refusal shown for any failure: the lock-out and when to try again, once there is one."""
        state = lockout.refusal_state(self._request(), str(self.cleaned_data.get("username") or ""))
        if state.locked:
            return ValidationError(state.message, code="locked_out")
        return ValidationError(self.error_messages["invalid_login"], code="invalid_login")

    def confirm_login_allowed(self, user: Any) -> None:
        """Called only after a correct password (django-axes has already refused a locked-out client)."""
        try:
            super().confirm_login_allowed(user)  # active and staff
        except ValidationError:
            self._refuse(user)
        device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()
        if device is None:
            self._refuse(user)
        # verify_token also counts failures and backs off (django-otp's throttling).
        if not device.verify_token(self.cleaned_data.get("otp_token") or ""):
            audit_record(
                action="auth.otp_failed",
                actor=user.get_username(),
                target_type="user",
                target_id=str(user.pk),
                detail={"area": "admin"},
            )
            self._refuse(user)
        # django_otp's user_logged_in handler keeps this device in the session: the user is verified.
        user.otp_device = device

    def _refuse(self, user: Any) -> NoReturn:
        lockout.failure_record(self._request(), user.get_username())
        raise self.get_invalid_login_error()

    def _request(self) -> HttpRequest:
        assert self.request is not None, "the admin's LoginView always passes the request"
        return self.request
