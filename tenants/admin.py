from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from tenants.models import ApiKey, Insurer, InsurerUser


@admin.register(Insurer)
class InsurerAdmin(admin.ModelAdmin[Insurer]):
    list_display = ["name", "slug", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    readonly_fields = ["created_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    list_display = ["__str__", "insurer", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["insurer"]
    readonly_fields = ["insurer", "prefix", "key_sha256", "created_at", "last_used_at"]
    exclude = ["key_sha256"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are created with `manage.py create_api_key` or in the portal, shown once


@admin.register(InsurerUser)
class InsurerUserAdmin(admin.ModelAdmin[InsurerUser]):
    list_display = ["user", "insurer", "role"]
    list_filter = ["insurer", "role"]
    search_fields = ["user__username"]
