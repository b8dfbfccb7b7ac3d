"""The audit log in the admin: read-only for everyone, superusers included."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin[AuditEntry]):
    list_display = ["chain_seq", "at", "action", "actor", "target_type", "target_id", "short_hash"]
    list_filter = ["action", "target_type", ("chain_seq", admin.EmptyFieldListFilter), "at"]
    search_fields = ["=target_id", "=actor", "action"]
    date_hierarchy = "at"
    readonly_fields = [f.name for f in AuditEntry._meta.fields]
    show_full_result_count = False  # no COUNT(*) over a large table on every page

    @admin.display(description=_("hash"))
    def short_hash(self, entry: AuditEntry) -> str:
        return (entry.hash or "")[:12]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False
