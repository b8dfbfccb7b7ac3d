from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from ops import views as ops_views
from underwriting.admin_subjects import subject_rights

urlpatterns = [
    path("", ops_views.home, name="home"),
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.prometheus_metrics, name="metrics"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/subject-rights/", admin.site.admin_view(subject_rights), name="subject-rights"),
    path("admin/", admin.site.urls),
    path("portal/", include("insurer_portal.urls")),
    path("residents/", include("residents.urls")),
    path("api/v1/", include("insurer_portal.urls_api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # A page of our own: drf-spectacular's would load web fonts from the internet.
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="api-schema", template_name="api/redoc.html"),
        name="api-redoc",
    ),
]

admin.site.site_header = _("Underwriting platform: bureau administration")
admin.site.site_title = _("Underwriting platform")
admin.site.index_title = _("Data domain governance")
