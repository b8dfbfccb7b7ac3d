"""The insurer portal, mounted at /portal/. Object ids in URLs only: never personal data."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from insurer_portal.views import auth, batches, dashboard, insurer_admin, requests

app_name = "portal"

password_reset = [
    path(
        "password-reset/",
        auth_views.PasswordResetView.as_view(
            template_name="portal/auth/password_reset_form.html",
            email_template_name="portal/auth/password_reset_email.txt",
            subject_template_name="portal/auth/password_reset_subject.txt",
            success_url=reverse_lazy("portal:password-reset-done"),
        ),
        name="password-reset",
    ),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name="portal/auth/password_reset_done.html"),
        name="password-reset-done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="portal/auth/password_reset_confirm.html",
            success_url=reverse_lazy("portal:password-reset-complete"),
        ),
        name="password-reset-confirm",
    ),
    path(
        "password-reset/complete/",
        auth_views.PasswordResetCompleteView.as_view(template_name="portal/auth/password_reset_complete.html"),
        name="password-reset-complete",
    ),
]

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("login/", auth.login_view, name="login"),
    path("login/verify/", auth.verify_view, name="verify"),
    path("logout/", auth.logout_view, name="logout"),
    path("account/security/", auth.security_view, name="security"),
    path("account/two-factor/", auth.setup_view, name="2fa-setup"),
    path("account/two-factor/remove/", auth.totp_remove_view, name="2fa-remove"),
    *password_reset,
    path("requests/", requests.request_list, name="requests"),
    path("requests/new/", requests.request_new, name="request-new"),
    path("requests/<uuid:request_id>/", requests.request_detail, name="request-detail"),
    path("requests/<uuid:request_id>/status/", requests.request_status, name="request-status"),
    path("batches/", batches.batch_list, name="batches"),
    path("batches/template.csv", batches.batch_template, name="batch-template"),
    path("batches/<int:batch_id>/", batches.batch_detail, name="batch-detail"),
    path("batches/<int:batch_id>/progress/", batches.batch_progress, name="batch-progress"),
    path("batches/<int:batch_id>/start/", batches.batch_start, name="batch-start"),
    path("batches/<int:batch_id>/cancel/", batches.batch_cancel, name="batch-cancel"),
    path("batches/<int:batch_id>/results.<str:fmt>", batches.batch_download, name="batch-download"),
    path("admin/users/", insurer_admin.members, name="members"),
    path("admin/users/<int:member_id>/toggle/", insurer_admin.member_toggle, name="member-toggle"),
    path("admin/users/<int:member_id>/role/", insurer_admin.member_role, name="member-role"),
    path("admin/api-keys/", insurer_admin.api_keys, name="api-keys"),
    path("admin/api-keys/<int:key_id>/revoke/", insurer_admin.api_key_revoke, name="api-key-revoke"),
    path("admin/webhooks/", insurer_admin.webhooks, name="webhooks"),
    path("admin/webhooks/<int:endpoint_id>/", insurer_admin.webhook_detail, name="webhook-detail"),
    path("admin/webhooks/<int:endpoint_id>/test/", insurer_admin.webhook_test, name="webhook-test"),
    path("admin/webhooks/<int:endpoint_id>/toggle/", insurer_admin.webhook_toggle, name="webhook-toggle"),
    path("admin/webhooks/<int:endpoint_id>/rotate/", insurer_admin.webhook_rotate, name="webhook-rotate"),
    path("admin/deliveries/<int:delivery_id>/retry/", insurer_admin.delivery_retry, name="delivery-retry"),
    path("admin/usage/", insurer_admin.usage, name="usage"),
]
