"""Small display helpers for the portal templates."""

from __future__ import annotations

from django import template
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

register = template.Library()

DECISIONS = {
    "accept": pgettext_lazy("underwriting decision", "accept"),
    "rate": pgettext_lazy("underwriting decision", "rate"),
    "postpone": pgettext_lazy("underwriting decision", "postpone"),
    "refer": pgettext_lazy("underwriting decision", "refer"),
    "decline": pgettext_lazy("underwriting decision", "decline"),
}
STATUS_TONE = {
    "completed": "ok",
    "rejected": "bad",
    "failed": "bad",
    "unrated": "neutral",
}
EVENT_TYPES = {"request.completed", "request.rejected", "request.unrated", "request.failed"}


@register.filter
def decision_label(code: str) -> str:
    return str(DECISIONS.get(code, code or "—"))


@register.filter
def status_tone(status: str) -> str:
    return STATUS_TONE.get(status, "busy")


@register.filter
def tier_tone(decision: str) -> str:
    return {"accept": "ok", "rate": "warn", "postpone": "warn", "refer": "warn", "decline": "bad"}.get(
        decision, "neutral"
    )


@register.filter
def seconds(value: float | str | None) -> str:
    if not isinstance(value, int | float):
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


@register.simple_tag
def yes_no(value: bool) -> str:
    return str(_("yes") if value else _("no"))


@register.filter
def status_label(code: str) -> str:
    from underwriting.models import RequestStatus

    return str(RequestStatus(code).label) if code in RequestStatus.values else code


@register.filter
def reason_label(code: str) -> str:
    from underwriting.models import RejectReason

    return str(RejectReason(code).label) if code in RejectReason.values else code


@register.filter
def row_error(code: str) -> str:
    from insurer_portal.batches import error_message

    return error_message(str(code))
