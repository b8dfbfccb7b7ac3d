"""Misuse flags and rate-limit overrides in the admin: thin front ends over
``underwriting.services.flags`` and ``underwriting.services.overrides``.

Subjects appear only as the first 12 hex digits of their pseudonymous key; staff grant an override by
naming a request of that insurer and subject, never by typing a resident ID.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _

from underwriting import charts, selectors
from underwriting.errors import UnderwritingError
from underwriting.models import MisuseFlag, RateLimitOverride, UnderwritingRequest
from underwriting.services.flags import flag_review
from underwriting.services.overrides import MAX_ALLOWANCE, MAX_OVERRIDE_DAYS, override_check, override_grant_for_request

CHART_DAYS = 30
FLAG_FIELDS: list[str | list[str] | tuple[str, ...] | tuple[()]] = [
    "kind", "status", "review_note", "insurer", "api_key", "subject", "count", "threshold",
    "window_start", "window_end", "window_seconds", "raised_at", "updated_at", "reviewed_by",
    "reviewed_at"]  # fmt: skip


class FlagReviewForm(forms.ModelForm[MisuseFlag]):
    status = forms.ChoiceField(
        label=_("status"),
        choices=[(MisuseFlag.Status.ACKNOWLEDGED, _("acknowledged")), (MisuseFlag.Status.CLOSED, _("closed"))],
    )

    class Meta:
        model = MisuseFlag
        fields = ["status", "review_note"]


@admin.register(MisuseFlag)
class MisuseFlagAdmin(admin.ModelAdmin[MisuseFlag]):
    list_display = ["id", "kind", "status", "insurer", "api_key", "subject", "count", "threshold",
                    "window_start", "window_end", "raised_at", "reviewed_by"]  # fmt: skip
    list_filter = ["status", "kind", "insurer", "raised_at"]
    show_facets = admin.ShowFacets.ALWAYS
    date_hierarchy = "raised_at"
    form = FlagReviewForm
    actions = ["acknowledge_selected", "close_selected"]
    fields = FLAG_FIELDS
    change_list_template = "admin/underwriting/misuseflag/change_list.html"

    @admin.display(description=_("subject (pseudonymous key)"))
    def subject(self, flag: MisuseFlag) -> str:
        return flag.subject_ref or "-"

    def get_readonly_fields(self, request: HttpRequest, obj: MisuseFlag | None = None) -> list[str]:
        editable = {"status", "review_note"}
        if obj is not None and obj.status == MisuseFlag.Status.CLOSED:
            editable = set()
        return [name for name in FLAG_FIELDS if isinstance(name, str) and name not in editable]

    def has_change_permission(self, request: HttpRequest, obj: MisuseFlag | None = None) -> bool:
        # A closed flag is a record: its page offers no Save (the list's actions still review open ones).
        closed = obj is not None and obj.status == MisuseFlag.Status.CLOSED
        return not closed and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: MisuseFlag, form: Any, change: bool) -> None:
        # The review goes through the service (who, when, audit), never a bare save of the row.
        flag_review(
            flag_id=obj.pk, status=form.cleaned_data["status"], reviewed_by=request.user,  # type: ignore[arg-type]
            note=form.cleaned_data.get("review_note", ""),
        )  # fmt: skip
        obj.refresh_from_db()

    def _review(self, request: HttpRequest, queryset: QuerySet[MisuseFlag], status: str) -> None:
        done = sum(flag_review(flag_id=flag.pk, status=status, reviewed_by=request.user) for flag in queryset)  # type: ignore[arg-type]
        self.message_user(request, _("%(count)d flags updated.") % {"count": done}, messages.SUCCESS)

    @admin.action(description=_("Acknowledge selected flags"), permissions=["change"])
    def acknowledge_selected(self, request: HttpRequest, queryset: QuerySet[MisuseFlag]) -> None:
        self._review(request, queryset, MisuseFlag.Status.ACKNOWLEDGED)

    @admin.action(description=_("Close selected flags"), permissions=["change"])
    def close_selected(self, request: HttpRequest, queryset: QuerySet[MisuseFlag]) -> None:
        self._review(request, queryset, MisuseFlag.Status.CLOSED)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        days, series = selectors.flags_per_day_by_kind(days=CHART_DAYS)
        chart, legend = charts.stacked_day_chart(days, series)
        context = {
            "flag_chart": chart,
            "flag_legend": legend,
            "flag_chart_days": CHART_DAYS,
            "flag_chart_total": sum(sum(values) for values in series.values()),
            "open_by_kind": selectors.open_flags_by_kind(),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # flags are raised by the evaluation job only

    def has_delete_permission(self, request: HttpRequest, obj: MisuseFlag | None = None) -> bool:
        return False


def _override_error(field: str) -> str:
    if field == "expires_at":
        return _("The expiry must be within the next %(days)d days.") % {"days": MAX_OVERRIDE_DAYS}
    if field == "allowance":
        return _("Allow between 1 and %(count)d extra requests.") % {"count": MAX_ALLOWANCE}
    return str(_("Say why the insurer may underwrite this person again."))


class OverrideGrantForm(forms.ModelForm[RateLimitOverride]):
    request_id = forms.UUIDField(
        label=_("underwriting request"),
        help_text=_(
            "The id of a request (e.g. the one that was rate limited): the override is for its insurer and subject."
        ),
    )

    class Meta:
        model = RateLimitOverride
        fields = ["reason", "allowance", "expires_at"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        request_id = data.get("request_id")
        if request_id and not UnderwritingRequest.objects.filter(pk=request_id).exists():
            self.add_error("request_id", _("No such request."))
        if {"reason", "allowance", "expires_at"} <= set(data):
            try:
                override_check(reason=data["reason"], expires_at=data["expires_at"], allowance=data["allowance"])
            except UnderwritingError as exc:
                for field in exc.fields:
                    self.add_error(field, _override_error(field))
        return data


@admin.register(RateLimitOverride)
class RateLimitOverrideAdmin(admin.ModelAdmin[RateLimitOverride]):
    list_display = ["__str__", "insurer", "subject", "allowance", "used", "expires_at", "granted_by", "granted_at"]
    list_filter = ["insurer", "granted_at", "expires_at"]
    search_fields = ["reason"]
    readonly_fields = ["insurer", "subject", "reason", "allowance", "used", "expires_at", "granted_by", "granted_at"]

    @admin.display(description=_("subject (pseudonymous key)"))
    def subject(self, override: RateLimitOverride) -> str:
        return override.subject_ref

    def get_form(
        self, request: HttpRequest, obj: RateLimitOverride | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = OverrideGrantForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: RateLimitOverride | None = None) -> list[str]:  # type: ignore[override]
        return ["request_id", "reason", "allowance", "expires_at"] if obj is None else list(self.readonly_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: RateLimitOverride | None = None) -> list[str]:
        return [] if obj is None else list(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: RateLimitOverride, form: Any, change: bool) -> None:
        if change:
            return  # granted overrides never change
        data = form.cleaned_data
        granted = override_grant_for_request(
            request_id=str(data["request_id"]), reason=data["reason"], expires_at=data["expires_at"],
            granted_by=request.user, allowance=data["allowance"],  # type: ignore[arg-type]
        )  # fmt: skip
        obj.pk = granted.pk
        obj.refresh_from_db()

    def has_change_permission(self, request: HttpRequest, obj: RateLimitOverride | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: RateLimitOverride | None = None) -> bool:
        return False
