"""Small display helpers for the portal templates."""

from __future__ import annotations

from typing import Any

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


@register.simple_tag
def rejection_help(uw: Any) -> str:
    """What to do next after a rejection, in the user's language (the reason alone leaves users stuck)."""
    from django.conf import settings
    from django.utils import formats
    from django.utils.translation import gettext

    from insurer_portal.selectors import own_limit_retry_date

    if uw.reason == "rate_limited":
        text = gettext(
            "Your company may make at most %(count)s requests about one applicant in %(days)s days, and the "
            "bureau allows at most %(subject)s about one person in %(subject_days)s days across all insurers."
        ) % {
            "count": settings.UNDERWRITING_RATE_LIMIT_COUNT,
            "days": settings.UNDERWRITING_RATE_LIMIT_DAYS,
            "subject": settings.UNDERWRITING_SUBJECT_LIMIT_COUNT,
            "subject_days": settings.UNDERWRITING_SUBJECT_LIMIT_DAYS,
        }
        retry = own_limit_retry_date(insurer_id=uw.insurer_id, subject_key=uw.subject_key)
        if retry is not None:
            text += " " + gettext("Your company's limit allows a new request about this applicant from %(date)s.") % {
                "date": formats.date_format(retry, "Y-m-d")
            }
        return str(
            text
            + " "
            + gettext(
                "If a new request is justified sooner, ask the bureau's data-protection office for an override "
                "for this applicant."
            )
        )
    help_texts = {
        "manual_not_approved": gettext(
            "This manual version is not approved or was retired: choose a manual offered in the form, or ask "
            "the bureau which versions are in force."
        ),
        "invalid_input": gettext("Correct the fields named in the error and submit a new request."),
        "consent_declined": gettext("The applicant declined. Only a new request the applicant agrees to can go ahead."),
        "consent_expired": gettext(
            "Nobody confirmed in time. Check the resident ID and name, ask the applicant to watch for the "
            "bureau's message, then submit a new request."
        ),
        "consent_withdrawn": gettext(
            "The applicant withdrew consent before the assessment; nothing was assessed. Only a new consent "
            "the applicant gives can go ahead."
        ),
    }
    return str(help_texts.get(uw.reason, ""))
