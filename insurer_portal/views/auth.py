"""Sign-in, the second factor (TOTP), enrolment and sign-out."""

from __future__ import annotations

import base64
from typing import Any

import segno
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp import user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from insurer_portal import lockout, services
from insurer_portal.forms import LoginForm, TokenForm
from insurer_portal.selectors import membership_for
from insurer_portal.views.access import needs_second_factor, portal_view, safe_next
from tenants.models import InsurerUser

SETUP_DEVICE_KEY = "portal-2fa-setup-device"


@never_cache
@sensitive_post_parameters("password")
def login_view(request: HttpRequest) -> HttpResponse:
    form = LoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        username = form.cleaned_data["username"]
        # A locked-out client is refused by django-axes (AUTHENTICATION_BACKENDS) before the password is checked.
        user = authenticate(request, username=username, password=form.cleaned_data["password"])
        if user is not None and membership_for(user) is None:
            # Counted like a wrong password: when the lock-out comes must not tell a right password apart.
            lockout.failure_record(request, username)
            user = None
        if user is not None:
            login(request, user)
            return _after_password(request, username)
        state = lockout.refusal_state(request, username)
        form.add_error(None, state.message if state.locked else _("The user name or password is not correct."))
    context = {
        "form": form,
        "next": request.GET.get("next", ""),
        "lockout_failures": settings.PORTAL_LOCKOUT_FAILURES,
        "lockout_minutes": max(1, settings.PORTAL_LOCKOUT_SECONDS // 60),
    }
    return render(request, "portal/auth/login.html", context)


def _after_password(request: HttpRequest, username: str) -> HttpResponse:
    membership = membership_for(request.user)
    assert membership is not None
    step = needs_second_factor(request, membership)
    target = safe_next(request)
    if step == "portal:verify":
        return redirect(f"{reverse(step)}?next={target}")
    # No code to give (an admin without an authenticator enrols one next): the sign-in is complete.
    response = redirect(f"{reverse(step)}?next={target}" if step else target)
    lockout.signin_succeeded(request, response, username)
    return response


@never_cache
def verify_view(request: HttpRequest) -> HttpResponse:
    user: Any = request.user
    if not user.is_authenticated:
        return redirect("portal:login")
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        return redirect("portal:dashboard")
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        state = lockout.attempt_begin(request, user.username)
        if not state.locked:
            if device.verify_token(form.cleaned_data["token"]):
                otp_login(request, device)
                response = redirect(safe_next(request))
                lockout.signin_succeeded(request, response, user.username)
                return response
            state = lockout.failure_record(request, user.username)
        if state.locked:
            logout(request)
            messages.error(request, state.message)
            return redirect("portal:login")
        form.add_error("token", _("This code is not correct or has expired."))
    return render(request, "portal/auth/verify.html", {"form": form, "next": request.GET.get("next", "")})


@never_cache
def setup_view(request: HttpRequest) -> HttpResponse:
    """Enrol an authenticator: scan the QR code (or type the key), then confirm with a first code."""
    user: Any = request.user
    membership = membership_for(user)
    if membership is None:
        return redirect("portal:login")
    if user_has_device(user, confirmed=True) and not user.is_verified():
        return redirect("portal:verify")  # replacing a device needs the current one first
    device = TOTPDevice.objects.filter(pk=request.session.get(SETUP_DEVICE_KEY), user=user, confirmed=False).first()
    if device is None:
        device = services.totp_device_start(user=user)
        request.session[SETUP_DEVICE_KEY] = device.pk
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if services.totp_device_confirm(device=device, token=form.cleaned_data["token"]):
            request.session.pop(SETUP_DEVICE_KEY, None)
            otp_login(request, device)
            messages.success(request, _("Two-factor sign-in is on. You will be asked for a code at each sign-in."))
            return redirect(safe_next(request))
        form.add_error("token", _("This code is not correct or has expired."))
    context = {
        "form": form,
        "membership": membership,
        "qr_svg": segno.make(device.config_url, error="m").svg_inline(scale=4, dark="#0d2340"),
        "secret": base64.b32encode(device.bin_key).decode(),
        "required": membership.role == InsurerUser.Role.ADMIN,
        "next": request.GET.get("next", ""),
    }
    return render(request, "portal/auth/setup.html", context)


@portal_view()
def security_view(request: HttpRequest, membership: InsurerUser) -> HttpResponse:
    return render(
        request,
        "portal/auth/security.html",
        {"membership": membership, "has_device": user_has_device(request.user, confirmed=True)},
    )


@require_POST
@portal_view()
def totp_remove_view(request: HttpRequest, membership: InsurerUser) -> HttpResponse:
    if membership.role == InsurerUser.Role.ADMIN:
        messages.error(request, _("Insurer admins must keep two-factor sign-in."))
    else:
        services.totp_device_remove(user=membership.user)
        messages.success(request, _("Two-factor sign-in is off."))
    return redirect("portal:security")


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    messages.info(request, _("You have signed out."))
    return redirect("portal:login")
