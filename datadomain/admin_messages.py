"""Bureau admin: messages to residents (sign-in codes, consent notices) and why they failed. Never the
number or the text; the subject by its pseudonymous key only."""

from __future__ import annotations

from django.contrib import admin

from audit.admin_readonly import ViewOnlyAdminMixin
from datadomain.models.identity import MessageDelivery


@admin.register(MessageDelivery)
class MessageDeliveryAdmin(ViewOnlyAdminMixin, admin.ModelAdmin[MessageDelivery]):
    list_display = ["created_at", "kind", "subject_ref", "backend", "status", "attempts", "last_error"]
    list_filter = ["status", "kind", "backend"]
    exclude = ["subject_key"]
    readonly_fields = ["kind", "subject_ref", "backend", "status", "attempts", "last_error", "created_at"]
