"""Who may see a portal page: a signed-in, active member of an active insurer, with two factors when
required (always for insurer admins; for anyone who enrolled an authenticator)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate, ParamSpec

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp import user_has_device

from insurer_portal.selectors import membership_for
from tenants.models import InsurerUser

P = ParamSpec("P")
PortalView = Callable[Concatenate[HttpRequest, InsurerUser, P], HttpResponse]


def needs_second_factor(request: HttpRequest, membership: InsurerUser) -> str | None:
    """The URL name of the step still missing ("portal:verify" or "portal:2fa-setup"), or None."""
    user: Any = request.user
    # Right after login() the user is not yet wrapped by OTPMiddleware (and is not verified).
    if getattr(user, "is_verified", lambda: False)():
        return None
    if user_has_device(user, confirmed=True):
        return "portal:verify"
    if membership.role == InsurerUser.Role.ADMIN:
        return "portal:2fa-setup"
    return None


def portal_view(
    *, admin: bool = False
) -> Callable[[PortalView[P]], Callable[Concatenate[HttpRequest, P], HttpResponse]]:
    def decorator(view: PortalView[P]) -> Callable[Concatenate[HttpRequest, P], HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
            membership = membership_for(request.user)
            if membership is None:
                return redirect_to_login(request.get_full_path(), reverse("portal:login"))
            step = needs_second_factor(request, membership)
            if step is not None:
                return redirect(f"{reverse(step)}?next={request.path}")
            if admin and membership.role != InsurerUser.Role.ADMIN:
                raise Http404
            return view(request, membership, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def safe_next(request: HttpRequest, default: str = "portal:dashboard") -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return reverse(default)
