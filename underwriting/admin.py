from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from audit.models import AuditEntry
from audit.services import audit_record
from underwriting import selectors
from underwriting.admin_consent import ConsentConfirmationAdmin, ConsentPolicyAdmin  # noqa: F401 - registered there
from underwriting.admin_flags import MisuseFlagAdmin, RateLimitOverrideAdmin  # noqa: F401 - registered there
from underwriting.admin_webhooks import WebhookDeliveryAdmin, WebhookEndpointAdmin  # noqa: F401 - registered there
from underwriting.downloads import csv_download
from underwriting.errors import UnderwritingError
from underwriting.manual_review import manual_review_for
from underwriting.models import RatingManual, RequestEvent, UnderwritingRequest
from underwriting.services.manuals import manual_approve


class ManualApprovalForm(forms.Form):
    confirm = forms.BooleanField(
        label=_("I have reviewed the weights, the tiers and the changes above, and approve this version"),
        required=True,
        error_messages={"required": _("Tick the confirmation box to approve the manual.")},
    )
    # The version the reviewer saw: a different document is never approved on the strength of this page.
    document_sha256 = forms.CharField(max_length=64, widget=forms.HiddenInput)


# The approval service's refusals, as the reviewer reads them.
APPROVAL_REFUSALS = {
    "four_eyes": _("You uploaded this version: another model reviewer must approve it."),
    "manual_not_draft": _("This version is not awaiting approval."),
    "approver_not_staff": _("Only bureau staff may approve a rating manual."),
}


@admin.register(RatingManual)
class RatingManualAdmin(admin.ModelAdmin[RatingManual]):
    """Manuals are read here and approved on their own page (weights, tiers, changes since the previous
    approved version, an explicit confirmation); uploads go through ``manage.py load_manual``, which
    validates the document. Nothing is edited in the admin, so no page offers Save or Delete."""

    list_display = ["slug", "version", "title", "owner", "status", "uploaded_by", "approved_by", "approved_at"]
    list_filter = ["status", "owner"]
    search_fields = ["slug", "title"]
    fieldsets = [
        (None, {"fields": ["slug", "version", "title", "owner", "status"]}),
        (_("Who and when"), {"fields": ["uploaded_by", "uploaded_at", "approved_by", "approved_at"]}),
        (
            _("Document"),
            {"fields": ["document_sha256", "document"], "classes": ["collapse"]},
        ),
    ]
    readonly_fields = [f.name for f in RatingManual._meta.fields]
    change_form_template = "admin/underwriting/ratingmanual/change_form.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: RatingManual | None = None) -> bool:
        return False  # approved versions are immutable and drafts change only by a new upload

    def has_delete_permission(self, request: HttpRequest, obj: RatingManual | None = None) -> bool:
        return False

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("underwriting.approve_ratingmanual")

    def get_list_display(self, request: HttpRequest) -> list[str | Callable[[RatingManual], str | bool]]:
        return [*self.list_display, *(["review"] if self.has_approve_permission(request) else [])]

    @admin.display(description=_("approval"))
    def review(self, manual: RatingManual) -> SafeString | str:
        if manual.status != RatingManual.Status.DRAFT:
            return "-"
        url = reverse("admin:underwriting_ratingmanual_approve", args=[manual.pk])
        return format_html('<a href="{}">{}</a>', url, _("Review and approve…"))

    def get_urls(self) -> list[URLPattern]:
        approve = path(
            "<int:pk>/approve/", self.admin_site.admin_view(self.approve_view), name="underwriting_ratingmanual_approve"
        )
        return [approve, *super().get_urls()]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        manual = self.get_object(request, object_id)
        context = {**(extra_context or {})}
        if manual is not None:
            context.update(review=manual_review_for(manual), may_review=self.has_approve_permission(request))
        return super().change_view(request, object_id, form_url, extra_context=context)

    def approve_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """GET: the manual as the reviewer must read it; POST (model reviewers, never the author): approve it
        through ``manual_approve`` once the confirmation is ticked."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        manual = get_object_or_404(RatingManual, pk=pk)
        form = ManualApprovalForm(initial={"document_sha256": manual.document_sha256})
        if request.method == "POST":
            if not self.has_approve_permission(request):
                raise PermissionDenied
            form = ManualApprovalForm(request.POST)
            if self._approve(request, manual, form):
                return redirect("admin:underwriting_ratingmanual_change", manual.pk)
        return TemplateResponse(
            request, "admin/underwriting/ratingmanual/approve.html", self._approve_context(request, manual, form)
        )

    def _approve(self, request: HttpRequest, manual: RatingManual, form: ManualApprovalForm) -> bool:
        if not form.is_valid():
            return False
        if form.cleaned_data["document_sha256"] != manual.document_sha256:
            self.message_user(request, _("The document changed while you read it: review it again."), messages.ERROR)
            return False
        try:
            manual_approve(slug=manual.slug, version=manual.version, approved_by=request.user)  # type: ignore[arg-type]
        except UnderwritingError as exc:
            self.message_user(request, str(APPROVAL_REFUSALS.get(exc.code, exc.message)), messages.ERROR)
            return False
        self.message_user(request, _("Approved %(manual)s.") % {"manual": manual}, messages.SUCCESS)
        return True

    def _approve_context(self, request: HttpRequest, manual: RatingManual, form: ManualApprovalForm) -> dict[str, Any]:
        manual.refresh_from_db()
        is_author = manual.uploaded_by_id == request.user.pk
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": manual,
            "title": _("Review and approve %(manual)s") % {"manual": manual},
            "review": manual_review_for(manual),
            "manual_title": selectors.manual_title(manual, language=get_language()),
            "form": form,
            "is_author": is_author,
            "may_approve": self.has_approve_permission(request)
            and manual.status == RatingManual.Status.DRAFT
            and not is_author,
        }


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
