"""The bureau's admin site: staff sign in with a password and a TOTP code, and land on a dashboard.

The sign-in has the portal's lock-out (insurer_portal.lockout) and refuses a wrong password and a wrong
code with the same message (ops.forms.StaffLoginForm), so it never confirms a password.

Every admin page (and every view wrapped in ``admin.site.admin_view``) requires a session verified by
the staff member's authenticator; a password alone only reaches the sign-in page.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache

from insurer_portal import lockout
from ops import selectors
from ops.forms import StaffLoginForm


class BureauAdminSite(admin.AdminSite):
    site_header = _("Underwriting platform: bureau administration")
    site_title = _("Underwriting platform")
    index_title = _("Data domain governance")
    login_form = StaffLoginForm
    login_template = "admin/bureau_login.html"
    index_template = "admin/bureau_index.html"

    def has_permission(self, request: HttpRequest) -> bool:
        user: Any = request.user
        return super().has_permission(request) and bool(getattr(user, "is_verified", lambda: False)())

    @method_decorator(never_cache)
    @method_decorator(login_not_required)
    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """Django's sign-in view with StaffLoginForm: one refusal message whatever was wrong, and the portal's
        lock-out (insurer_portal.lockout; a locked-out page is a 429 with Retry-After). A sign-in with both
        factors clears this client's count for the account and remembers the browser."""
        response = super().login(request, extra_context)
        if request.method == "POST" and response.status_code == 302 and self.has_permission(request):
            lockout.signin_succeeded(request, response, request.user.get_username())
        return response

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        context = {"dashboard": selectors.bureau_dashboard(request.user), **(extra_context or {})}
        return super().index(request, extra_context=context)
