"""Audit events Django itself raises (staff and portal sign-in, failed sign-in, admin changes), and the
staff role groups kept in place after every migrate (and every test-database flush)."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import post_migrate, post_save
from django.dispatch import receiver
from django.http import HttpRequest

from audit.roles import staff_roles_ensure
from audit.services import audit_record

ADMIN_FLAGS = {ADDITION: "add", CHANGE: "change", DELETION: "delete"}


def _area(request: HttpRequest | None) -> str:
    path = getattr(request, "path", "") or ""
    return "admin" if path.startswith("/admin/") else "portal" if path.startswith("/portal/") else "other"


@receiver(user_logged_in, dispatch_uid="audit-user-logged-in")
def on_logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    audit_record(
        action="auth.sign_in",
        actor=user.get_username(),
        target_type="user",
        target_id=str(user.pk),
        detail={"area": _area(request), "staff": bool(user.is_staff)},
    )


@receiver(user_login_failed, dispatch_uid="audit-user-login-failed")
def on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Django has already masked the password in ``credentials``; only the name tried is kept.
    audit_record(
        action="auth.sign_in_failed", actor=str(credentials.get("username", ""))[:150], detail={"area": _area(request)}
    )


@receiver(post_save, sender=LogEntry, dispatch_uid="audit-admin-log-entry")
def on_admin_change(sender: Any, instance: LogEntry, created: bool, **kwargs: Any) -> None:
    if not created:
        return
    content_type = instance.content_type
    audit_record(
        action=f"admin.{ADMIN_FLAGS.get(instance.action_flag, 'other')}",
        actor=instance.user.get_username(),
        target_type=f"{content_type.app_label}.{content_type.model}" if content_type else "",
        target_id=str(instance.object_id or ""),
    )


@receiver(post_migrate, dispatch_uid="audit-staff-roles")
def on_post_migrate(sender: AppConfig, **kwargs: Any) -> None:
    if sender.name == "audit":
        staff_roles_ensure()
