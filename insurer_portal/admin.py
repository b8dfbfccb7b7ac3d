from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from insurer_portal.models import Batch


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin[Batch]):
    """Read-only: batches are made in the portal; the sealed applicants are never shown."""

    list_display = ["filename", "insurer", "status", "total_rows", "valid_rows", "submitted_rows", "created_at"]
    list_filter = ["insurer", "status"]
    exclude = ["sealed_rows"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Batch | None = None) -> bool:
        return False
