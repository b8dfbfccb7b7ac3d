"""Bureau staff's view of the data domain. Lists show masked resident IDs only; a quarantined line
can be corrected and re-processed."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from datadomain import services
from datadomain.models import (
    ComparisonGrant,
    Consent,
    CustodianKey,
    EncryptedFeatureVector,
    IngestCheckpoint,
    Patient,
    QuarantinedLine,
)


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Patient)
class PatientAdmin(ReadOnlyAdmin):
    list_display = ["resident_id_masked", "sex", "birth_date", "ingest_batch"]
    # Raw resident IDs and names stay out of the admin pages; staff look a subject up by its key.
    fields = ["resource_id", "resident_id_masked", "subject_key", "sex", "birth_date", "version_id", "last_updated"]
    search_fields = ["=subject_key", "=resource_id"]
    list_filter = ["sex"]


@admin.register(QuarantinedLine)
class QuarantinedLineAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["source_path", "line_number", "reason_code", "reason", "created_at", "resolved_at"]
    list_filter = ["reason_code", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["source_path"]
    readonly_fields = ["source_path", "line_number", "reason_code", "reason", "created_at", "resolved_at"]
    fields = [*readonly_fields, "raw_line"]
    actions = ["reprocess"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description=_("Re-process the selected lines"))
    def reprocess(self, request: HttpRequest, queryset: QuerySet[QuarantinedLine]) -> None:
        outcomes = [services.quarantine_reprocess(quarantined_id=pk) for pk in queryset.values_list("pk", flat=True)]
        done = sum(outcomes)
        self.message_user(
            request,
            _("%(done)d line(s) ingested, %(left)d still quarantined.") % {"done": done, "left": len(outcomes) - done},
            messages.SUCCESS if done == len(outcomes) else messages.WARNING,
        )


@admin.register(Consent)
class ConsentAdmin(ReadOnlyAdmin):
    list_display = ["insurer_slug", "reference", "signed_at", "expires_at", "withdrawn_at", "created_at"]
    list_filter = ["insurer_slug", ("withdrawn_at", admin.EmptyFieldListFilter)]
    search_fields = ["reference", "=subject_key"]
    actions = ["withdraw"]

    def has_withdraw_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("datadomain.change_consent")

    @admin.action(description=_("Withdraw the selected consents"), permissions=["withdraw"])
    def withdraw(self, request: HttpRequest, queryset: QuerySet[Consent]) -> None:
        for consent_id in queryset.values_list("pk", flat=True):
            services.consent_withdraw(consent_id=consent_id, by=request.user.get_username())
        self.message_user(request, _("Consent withdrawn."), messages.SUCCESS)


@admin.register(CustodianKey)
class CustodianKeyAdmin(ReadOnlyAdmin):
    list_display = ["key_id", "status", "created_at"]
    list_filter = ["status"]
    actions = ["rotate"]

    def has_rotate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("datadomain.rotate_custodiankey")

    @admin.action(
        description=_("Rotate the key pair (a new active key; the old one keeps answering)"), permissions=["rotate"]
    )
    def rotate(self, request: HttpRequest, queryset: QuerySet[CustodianKey]) -> None:
        services.keypair_rotate_request(actor=request.user.get_username())
        self.message_user(request, _("Key rotation requested from the custodian."), messages.SUCCESS)


@admin.register(ComparisonGrant)
class ComparisonGrantAdmin(ReadOnlyAdmin):
    list_display = ["request_ref", "key_id", "budget", "used", "created_at"]
    search_fields = ["=request_ref"]


@admin.register(EncryptedFeatureVector)
class EncryptedFeatureVectorAdmin(ReadOnlyAdmin):
    list_display = ["patient", "catalog_version", "key_id", "as_of", "computed_at"]
    list_filter = ["catalog_version", "key_id"]
    exclude = ["ciphertexts", "exponents"]


@admin.register(IngestCheckpoint)
class IngestCheckpointAdmin(ReadOnlyAdmin):
    list_display = ["path", "lines_done", "completed", "updated_at"]
