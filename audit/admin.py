"""The audit log in the admin (read-only for everyone, superusers included, with a read-only "Verify the
chain" page for auditors) and four-eyes requests."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from audit import approvals, services
from audit.models import Approval, AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin[AuditEntry]):
    """Read-only for everyone; "Verify the chain" (object tools) checks it, read-only too."""

    list_display = ["position", "at", "action", "actor", "target_type", "target_id", "short_hash"]
    list_filter = ["action", "target_type", ("chain_seq", admin.EmptyFieldListFilter), "at"]
    search_fields = ["=target_id", "=actor", "action"]
    date_hierarchy = "at"
    readonly_fields = [f.name for f in AuditEntry._meta.fields]
    show_full_result_count = False  # no COUNT(*) over a large table on every page

    @admin.display(description=_("chain position"), ordering="chain_seq")
    def position(self, entry: AuditEntry) -> str:
        if entry.chain_seq is not None:
            return str(entry.chain_seq)
        grace = timedelta(seconds=float(settings.AUDIT_CHAIN_GRACE_SECONDS))
        # Linked within seconds by the chainer; past the grace period it is a failure verification reports.
        fresh = timezone.now() - entry.at <= grace
        return str(pgettext_lazy("audit chain", "pending") if fresh else _("not chained (overdue)"))

    @admin.display(description=_("hash"))
    def short_hash(self, entry: AuditEntry) -> str:
        return (entry.hash or "")[:12]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        verify = path("verify/", self.admin_site.admin_view(self.verify_view), name="audit_auditentry_verify")
        return [verify, *super().get_urls()]

    def verify_view(self, request: HttpRequest) -> HttpResponse:
        """The whole chain and its anchors checked now, read-only (GET: it changes nothing)."""
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Verify the audit chain"),
            "report": services.audit_chain_verify(),
            "grace_seconds": settings.AUDIT_CHAIN_GRACE_SECONDS,
        }
        return TemplateResponse(request, "admin/audit/auditentry/verify.html", context)


@admin.register(Approval)
class ApprovalAdmin(admin.ModelAdmin[Approval]):
    """Four-eyes requests: staff see the kinds their role handles (auditors see all, read-only) and
    approve or refuse other people's requests. Carrying an approved request out happens where the
    action lives: the custodian keys page, the subject rights page, or a management command."""

    list_display = ["id", "kind", "target", "status", "requested_by", "requested_at", "decided_by", "executed_by"]
    list_filter = ["kind", "status"]
    readonly_fields = [f.name for f in Approval._meta.fields]
    actions = ["approve", "refuse"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Approval]:
        queryset = super().get_queryset(request).select_related("requested_by", "decided_by", "executed_by")
        if request.user.has_perm("audit.view_auditentry"):
            return queryset
        return queryset.filter(kind__in=approvals.kinds_for(request.user))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Approval | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Approval | None = None) -> bool:
        return False

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return bool(approvals.kinds_for(request.user))

    def _decide(self, request: HttpRequest, queryset: QuerySet[Approval], *, approve: bool) -> None:
        for approval in queryset:
            try:
                approvals.approval_decide(approval_id=approval.pk, decided_by=request.user, approve=approve)
            except approvals.ApprovalError as exc:
                self.message_user(request, f"{approval}: {exc.message}", messages.ERROR)
            else:
                done = _("Approved %(request)s.") if approve else _("Refused %(request)s.")
                self.message_user(request, done % {"request": approval}, messages.SUCCESS)

    @admin.action(description=_("Approve the selected requests (four-eyes: not your own)"), permissions=["decide"])
    def approve(self, request: HttpRequest, queryset: QuerySet[Approval]) -> None:
        self._decide(request, queryset, approve=True)

    @admin.action(description=_("Refuse the selected requests"), permissions=["decide"])
    def refuse(self, request: HttpRequest, queryset: QuerySet[Approval]) -> None:
        self._decide(request, queryset, approve=False)
