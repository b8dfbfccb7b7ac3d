from __future__ import annotations

from django.contrib import admin

from ops import admin_totp  # noqa: F401 - registers the staff authenticators' admin
from ops.models import WorkerHeartbeat


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin[WorkerHeartbeat]):
    list_display = ["queue", "hostname", "seen_at", "beats"]
    list_filter = ["queue"]
    readonly_fields = ["queue", "hostname", "seen_at", "beats"]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False
