"""The admin app, with the bureau's own default site (``ops.admin_site.BureauAdminSite``).

Kept apart from ``ops.apps`` so that module holds one AppConfig, and light enough to import while the
app registry is still loading."""

from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class BureauAdminConfig(AdminConfig):
    default_site = "ops.admin_site.BureauAdminSite"
