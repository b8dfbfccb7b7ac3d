"""Bureau admin for consent proof: each insurer's consent mode, the confirmations waiting for residents
(pending, expired, decided) and, from the data domain, messages to residents that did not go out. Subjects
appear by their pseudonymous key only."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from audit.admin_readonly import ViewOnlyAdminMixin
from datadomain.admin_messages import MessageDeliveryAdmin  # noqa: F401 - registered there
from underwriting.models import ConsentConfirmation, ConsentPolicy
from underwriting.services.confirmations import consent_policy_set


@admin.register(ConsentPolicy)
class ConsentPolicyAdmin(admin.ModelAdmin[ConsentPolicy]):
    list_display = ["insurer", "mode", "confirmation_hours", "updated_at", "updated_by"]
    list_filter = ["mode"]
    fields = ["insurer", "mode", "confirmation_hours"]

    def save_model(self, request: HttpRequest, obj: ConsentPolicy, form: object, change: bool) -> None:
        consent_policy_set(
            insurer_id=obj.insurer_id,
            mode=obj.mode,
            confirmation_hours=obj.confirmation_hours,
            actor=getattr(request.user, "username", ""),
        )


@admin.register(ConsentConfirmation)
class ConsentConfirmationAdmin(ViewOnlyAdminMixin, admin.ModelAdmin[ConsentConfirmation]):
    list_display = ["request_id", "insurer", "subject_ref", "reachable", "status", "expires_at", "decided_at"]
    list_filter = ["status", "reachable"]
    readonly_fields = ["request", "subject_ref", "reachable", "status", "expires_at", "decided_at", "created_at"]
    exclude = ["subject_key"]
    date_hierarchy = "created_at"

    @admin.display(description=_("insurer"))
    def insurer(self, obj: ConsentConfirmation) -> str:
        return str(obj.request.insurer)

    def get_queryset(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).select_related("request__insurer")
