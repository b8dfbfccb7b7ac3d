"""The bureau's admin site: staff sign in with a password and a TOTP code, and land on a dashboard.

Every admin page (and every view wrapped in ``admin.site.admin_view``) requires a session verified by
the staff member's authenticator; a password alone only reaches the sign-in page.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

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

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        context = {"dashboard": selectors.bureau_dashboard(request.user), **(extra_context or {})}
        return super().index(request, extra_context=context)
