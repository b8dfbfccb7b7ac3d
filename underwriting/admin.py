from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from audit.models import AuditEntry
from audit.services import audit_record
from underwriting import selectors
from underwriting.admin_consent import ConsentConfirmationAdmin, ConsentPolicyAdmin  # noqa: F401 - registered there
from underwriting.admin_flags import MisuseFlagAdmin, RateLimitOverrideAdmin  # noqa: F401 - registered there
from underwriting.admin_webhooks import WebhookDeliveryAdmin, WebhookEndpointAdmin  # noqa: F401 - registered there
from underwriting.downloads import csv_download
from underwriting.errors import UnderwritingError
from underwriting.models import RatingManual, RequestEvent, UnderwritingRequest
from underwriting.services.manuals import manual_approve


@admin.register(RatingManual)
class RatingManualAdmin(admin.ModelAdmin[RatingManual]):
    list_display = ["slug", "version", "title", "owner", "status", "uploaded_by", "approved_by", "approved_at"]
    list_filter = ["status", "owner"]
    search_fields = ["slug", "title"]
    actions = ["approve_selected"]
    readonly_fields = [f.name for f in RatingManual._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # uploads go through `manage.py load_manual`, which validates the document

    def has_delete_permission(self, request: HttpRequest, obj: RatingManual | None = None) -> bool:
        return False

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("underwriting.approve_ratingmanual")

    @admin.action(description=_("Approve selected drafts (four-eyes: not your own)"), permissions=["approve"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[RatingManual]) -> None:
        for manual in queryset:
            try:
                manual_approve(slug=manual.slug, version=manual.version, approved_by=request.user)  # type: ignore[arg-type]
            except UnderwritingError as exc:
                self.message_user(request, f"{manual}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, _("Approved %(manual)s.") % {"manual": manual}, messages.SUCCESS)


class RequestEventInline(admin.TabularInline[RequestEvent, UnderwritingRequest]):
    model = RequestEvent
    extra = 0
    can_delete = False
    readonly_fields = ["from_status", "to_status", "reason", "at"]

    def has_add_permission(self, request: HttpRequest, obj: UnderwritingRequest | None = None) -> bool:
        return False


def _detail(entry: AuditEntry) -> str:
    return " ".join(f"{key}={value}" for key, value in sorted(entry.detail.items()) if value not in ("", None))


@admin.register(UnderwritingRequest)
class UnderwritingRequestAdmin(admin.ModelAdmin[UnderwritingRequest]):
    list_display = ["reference", "insurer", "manual", "status", "reason", "tier_code", "created_at", "completed_at"]
    list_filter = ["status", "reason", "tier_code", "insurer", "manual_slug", "created_at", "completed_at"]
    search_fields = ["reference", "=id"]
    date_hierarchy = "created_at"
    show_facets = admin.ShowFacets.ALWAYS  # counts next to each filter choice, for the regulator's questions
    inlines = [RequestEventInline]
    exclude = ["subject_key", "body_sha256"]
    actions = ["export_csv"]

    @admin.action(description=_("Export the selected requests as CSV (for the regulator)"), permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[UnderwritingRequest]) -> StreamingHttpResponse:
        audit_record(
            action="request.export",
            actor=request.user.get_username(),
            # The list filters' values, never the free-text search: staff may search for anything.
            detail={
                "count": queryset.count(),
                "filters": {key: request.GET[key][:100] for key in sorted(request.GET) if key != "q"},
                "searched": bool(request.GET.get("q")),
            },
        )
        return csv_download(selectors.requests_regulator_rows(queryset), name="underwriting-requests")

    def get_readonly_fields(self, request: HttpRequest, obj: UnderwritingRequest | None = None) -> list[str]:
        return [*(f.name for f in UnderwritingRequest._meta.fields if f.name not in self.exclude), "audit_trail"]

    @admin.display(description=_("audit trail"))
    def audit_trail(self, obj: UnderwritingRequest) -> SafeString:
        """The request's timeline as the audit log recorded it (transitions, custodian answers)."""
        entries = AuditEntry.objects.filter(target_type="underwriting_request", target_id=str(obj.pk)).order_by("id")
        rows = format_html_join(
            "",
            "<li>{} #{} {} {}</li>",
            (
                (timezone.localtime(e.at).isoformat(timespec="seconds"), e.chain_seq or "-", e.action, _detail(e))
                for e in entries
            ),
        )
        return format_html("<ol>{}</ol>", rows)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UnderwritingRequest | None = None) -> bool:
        return False  # a request changes only through its pipeline; the web's role may not rewrite the row

    def has_delete_permission(self, request: HttpRequest, obj: UnderwritingRequest | None = None) -> bool:
        return False
