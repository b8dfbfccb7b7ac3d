"""Sign-in, the second factor (TOTP), enrolment and sign-out."""

from __future__ import annotations

import base64
from typing import Any

import segno
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

from insurer_portal import services
from insurer_portal.forms import LoginForm, TokenForm
from insurer_portal.models import InsurerUser
from insurer_portal.selectors import membership_for
from insurer_portal.views.access import needs_second_factor, portal_view, safe_next

SETUP_DEVICE_KEY = "portal-2fa-setup-device"


def client_address(request: HttpRequest) -> str:
    """The peer address as the WSGI server saw it (behind a proxy, the proxy must set REMOTE_ADDR)."""
    return str(request.META.get("REMOTE_ADDR", ""))


@never_cache
@sensitive_post_parameters("password")
def login_view(request: HttpRequest) -> HttpResponse:
    form = LoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        username = form.cleaned_data["username"]
        address = client_address(request)
        if services.login_is_locked(username=username, address=address):
            form.add_error(None, _("Too many failed attempts. Try again in 15 minutes or reset your password."))
        else:
            user = authenticate(request, username=username, password=form.cleaned_data["password"])
            if user is not None and membership_for(user) is not None:
                login(request, user)
                services.login_failures_clear(username=username)
                return _after_password(request)
            locked = services.login_failure_record(username=username, address=address)
            form.add_error(
                None,
                _("Too many failed attempts. Try again in 15 minutes or reset your password.")
                if locked
                else _("The user name or password is not correct."),
            )
    return render(request, "portal/auth/login.html", {"form": form, "next": request.GET.get("next", "")})


def _after_password(request: HttpRequest) -> HttpResponse:
    membership = membership_for(request.user)
    assert membership is not None
    step = needs_second_factor(request, membership)
    target = safe_next(request)
    if step is not None:
        return redirect(f"{reverse(step)}?next={target}")
    return redirect(target)


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
        if services.login_is_locked(username=user.username, address=client_address(request)):
            logout(request)
            messages.error(request, _("Too many failed attempts. Try again in 15 minutes or reset your password."))
            return redirect("portal:login")
        if device.verify_token(form.cleaned_data["token"]):
            otp_login(request, device)
            services.login_failures_clear(username=user.username)
            return redirect(safe_next(request))
        if services.login_failure_record(username=user.username, address=client_address(request)):
            logout(request)
            messages.error(request, _("Too many failed attempts. Try again in 15 minutes or reset your password."))
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
