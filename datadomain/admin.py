"""Bureau staff's view of the data domain. Lists show masked resident IDs only; a quarantined line
can be corrected and re-processed; custodian keys are rotated (four-eyes) and retired here, by the
custodian's worker: this module never opens a private key."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from audit.admin_readonly import ViewOnlyAdminMixin
from audit.approvals import ApprovalError, approval_request
from audit.models import Approval
from config.celery import enqueue_on_commit
from datadomain import linkage, mapping, selectors, services
from datadomain.errors import DomainError
from datadomain.models import (
    CodeMapping,
    Consent,
    CustodianKey,
    EncryptedFeatureVector,
    IngestCheckpoint,
    Patient,
    PatientSource,
    QuarantinedLine,
    UnmappedCode,
)


class ReadOnlyAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Shown, never edited or deleted here: the web's database role could not write these tables anyway
    (ops/db_zones.py), and a patient's deletion page would read their clinical records. Erasure goes through
    the subject-rights page, corrections through the data domain."""


@admin.register(Patient)
class PatientAdmin(ReadOnlyAdmin):
    list_display = ["resident_id_masked", "sex", "birth_date", "ingest_batch"]
    # Raw resident IDs and names stay out of the admin pages; staff look a subject up by its key.
    fields = ["resource_id", "resident_id_masked", "subject_key", "sex", "birth_date", "version_id", "last_updated"]
    search_fields = ["=subject_key", "=resource_id"]
    list_filter = ["sex"]


@admin.register(PatientSource)
class PatientSourceAdmin(ReadOnlyAdmin):
    """Record linkage: every hospital Patient id linked to a subject. A link whose demographics differ from
    the subject's holds the subject's requests until a coder confirms it (``datadomain.linkage``). Names
    stay out of the page: it says which fields differ, and staff compare the sources' records in the
    hospital systems."""

    list_display = ["resource_id", "subject", "differs", "link_state", "confirmed_by", "confirmed_at"]
    fields = ["resource_id", "subject", "differs", "link_state", "birth_date", "version_id", "last_updated"]
    search_fields = ["=resource_id", "=patient__subject_key"]
    actions = ["confirm_links"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PatientSource]:
        return super().get_queryset(request).select_related("patient")

    @admin.display(description=_("subject"))
    def subject(self, obj: PatientSource) -> str:
        return obj.patient.resident_id_masked

    @admin.display(description=_("differs from the subject in"))
    def differs(self, obj: PatientSource) -> str:
        fields = linkage.differing_fields(obj.name, obj.sex, obj.patient.name, obj.patient.sex)
        return ", ".join(str(LINK_FIELDS[field]) for field in fields) or "-"

    @admin.display(description=_("link"))
    def link_state(self, obj: PatientSource) -> str:
        values = (obj.name, obj.sex, obj.patient.name, obj.patient.sex)
        if not linkage.differing_fields(*values):
            return str(_("consistent"))
        if obj.confirmed == linkage.demographics_digest(*values):
            return str(_("confirmed by staff"))
        return str(_("conflict: requests held"))

    @admin.action(description=_("Confirm: the same person as the subject"))
    def confirm_links(self, request: HttpRequest, queryset: QuerySet[PatientSource]) -> None:
        done = sum(linkage.confirm(source.pk, by=request.user.get_username()) for source in queryset)
        self.message_user(request, _("Links confirmed: %(count)d") % {"count": done}, messages.SUCCESS)


LINK_FIELDS = {"name": _("name"), "sex": _("sex")}


@admin.register(CodeMapping)
class CodeMappingAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Mapping tables per source (``datadomain.mapping``): CSV import and proposals, four-eyes approval;
    an approved change is applied by the data domain (the affected subjects' vectors become stale)."""

    list_display = ["source", "local_code", "icd10", "status", "proposed_by", "decided_by", "decided_at", "note"]
    list_filter = ["status", "source"]
    search_fields = ["local_code", "=icd10"]
    fields = ["source", "local_code", "icd10", "note"]
    actions = ["approve", "reject"]

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: CodeMapping, form: Any, change: bool) -> None:
        try:
            saved = mapping.propose(
                source=obj.source, local_code=obj.local_code, icd10=obj.icd10, note=obj.note,
                by=request.user.get_username(),
            )  # fmt: skip
        except DomainError as error:
            raise PermissionDenied(error.message) from None
        obj.pk = saved.pk

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.import_view)
        return [path("import/", view, name="datadomain_codemapping_import"), *super().get_urls()]

    @method_decorator(require_POST)
    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        upload = request.FILES.get("file")
        if upload is None or upload.size is None or upload.size > mapping.IMPORT_MAX_BYTES:
            self.message_user(request, _("Choose a CSV file of at most 4 MiB."), messages.ERROR)
        else:
            result = mapping.import_csv(upload.read(), by=request.user.get_username())
            self.message_user(
                request, _("Mapping changes proposed: %(count)d") % {"count": result.proposed}, messages.SUCCESS
            )
            for line, message in result.errors[:20]:
                self.message_user(
                    request, _("Line %(line)d: %(message)s") % {"line": line, "message": message}, messages.ERROR
                )
        return HttpResponseRedirect(reverse("admin:datadomain_codemapping_changelist"))

    @admin.action(description=_("Approve the selected changes (a second coder)"))
    def approve(self, request: HttpRequest, queryset: QuerySet[CodeMapping]) -> None:
        applied = []
        for change in queryset.filter(status=CodeMapping.Status.PENDING):
            try:
                mapping.approve(change.pk, by=request.user.get_username())
            except DomainError as error:
                self.message_user(request, error.message, messages.ERROR)
                continue
            applied.append((change.source, change.local_code))
        # Stamping the mapped records writes raw records: the data domain's queue does it.
        enqueue_on_commit("datadomain.tasks.mapping_apply", applied, what="mapping stamps")
        self.message_user(request, _("Changes approved: %(count)d") % {"count": len(applied)}, messages.SUCCESS)

    @admin.action(description=_("Reject the selected changes"))
    def reject(self, request: HttpRequest, queryset: QuerySet[CodeMapping]) -> None:
        for change in queryset.filter(status=CodeMapping.Status.PENDING):
            mapping.reject(change.pk, by=request.user.get_username())


@admin.register(UnmappedCode)
class UnmappedCodeAdmin(ReadOnlyAdmin):
    """The queue of local codes and texts in use, unmapped first by the records they hold, and the
    coverage per source (a snapshot the data domain refreshes after each ingest and mapping change)."""

    list_display = ["source", "local_code", "records", "mapped", "refreshed_at"]
    list_filter = ["mapped", "source"]
    search_fields = ["local_code"]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        rows = [
            {"source": row.source, "records": row.records, "mapped": row.mapped, "percent": round(100 * row.share, 1)}
            for row in mapping.coverage()
        ]
        return super().changelist_view(request, {**(extra_context or {}), "coverage": rows})


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
        # Ingest writes raw records: it runs on the data domain's queue, under its database role.
        ids = list(queryset.filter(resolved_at__isnull=True).values_list("pk", flat=True))
        enqueue_on_commit("datadomain.tasks.reprocess_quarantined", ids, what="quarantine reprocessing")
        self.message_user(
            request,
            _("%(count)d line(s) sent to the data domain for re-processing; a line that ingests shows as resolved.")
            % {"count": len(ids)},
            messages.SUCCESS,
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
    """Keys with their status, the active key and re-encryption progress, four-eyes rotation and the
    retirement of unused keys. Public halves only: the custodian's worker does the work on its queue."""

    list_display = ["key_id", "status", "created_at"]
    list_filter = ["status"]
    actions = ["retire"]
    change_list_template = "admin/datadomain/custodiankey/change_list.html"

    def has_rotate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("datadomain.rotate_custodiankey")

    def get_urls(self) -> list[URLPattern]:
        own = [
            path("rotation/ask/", self.admin_site.admin_view(self.ask_rotation), name="datadomain_key_rotation_ask"),
            path(
                "rotation/<int:approval_id>/carry-out/",
                self.admin_site.admin_view(self.carry_out_rotation),
                name="datadomain_key_rotation_carry_out",
            ),
        ]
        return own + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {
            **(extra_context or {}),
            "progress": selectors.reencryption_progress(),
            "rotations": Approval.objects.filter(
                kind=Approval.Kind.KEY_ROTATION, status__in=[Approval.Status.PENDING, Approval.Status.APPROVED]
            ).select_related("requested_by", "decided_by"),
            "may_rotate": self.has_rotate_permission(request),
        }
        return super().changelist_view(request, extra_context=context)

    def _back(self) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:datadomain_custodiankey_changelist"))

    @method_decorator(require_POST)
    def ask_rotation(self, request: HttpRequest) -> HttpResponse:
        if not self.has_rotate_permission(request):
            raise PermissionDenied
        try:
            approval = approval_request(
                kind=Approval.Kind.KEY_ROTATION, requested_by=request.user, reason=request.POST.get("reason", "")
            )
        except ApprovalError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(
                request,
                _("Rotation requested (%(approval)s): another key officer must approve it.") % {"approval": approval},
                messages.SUCCESS,
            )
        return self._back()

    @method_decorator(require_POST)
    def carry_out_rotation(self, request: HttpRequest, approval_id: int) -> HttpResponse:
        if not self.has_rotate_permission(request):
            raise PermissionDenied
        try:
            services.key_rotation_execute(approval_id=approval_id, executed_by=request.user)
        except ApprovalError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, _("Key rotation sent to the custodian."), messages.SUCCESS)
        return self._back()

    @admin.action(description=_("Retire the selected keys (only when no ciphertext uses them)"), permissions=["rotate"])
    def retire(self, request: HttpRequest, queryset: QuerySet[CustodianKey]) -> None:
        for key_id in queryset.values_list("key_id", flat=True):
            try:
                services.key_retire_request(key_id=key_id, actor=request.user.get_username())
            except DomainError as exc:
                self.message_user(request, f"{key_id[:16]}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, _("Retirement of %(key)s sent to the custodian.") % {"key": key_id[:16]})


# Comparison grants are not shown here: they hold the requests' MAC keys, and the web's database role
# cannot read them (the custodian's answers and refusals are in the audit log).


@admin.register(EncryptedFeatureVector)
class EncryptedFeatureVectorAdmin(ReadOnlyAdmin):
    list_display = ["patient", "catalog_version", "key_id", "as_of", "computed_at"]
    list_filter = ["catalog_version", "key_id"]
    exclude = ["ciphertexts", "exponents"]


@admin.register(IngestCheckpoint)
class IngestCheckpointAdmin(ReadOnlyAdmin):
    list_display = ["path", "lines_done", "completed", "updated_at"]
