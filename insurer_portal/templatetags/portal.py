"""Small display helpers for the portal templates."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from tenants.models import InsurerUser
from underwriting import selectors as uw_selectors
from underwriting.charts import TIER_COLOURS
from underwriting.models import DECISION_LABELS, RatingManual, UnderwritingRequest

register = template.Library()

STATUS_TONE = {
    "completed": "ok",
    "rejected": "bad",
    "failed": "bad",
    "unrated": "neutral",
}
EVENT_TYPES = {"request.completed", "request.rejected", "request.unrated", "request.failed"}


@register.filter
def decision_label(code: str) -> str:
    return str(DECISION_LABELS.get(code, code or "—"))


@register.filter
def status_tone(status: str) -> str:
    return STATUS_TONE.get(status, "busy")


@register.filter
def tier_class(code: str) -> str:
    """The badge class of a tier: one colour per tier code, the colours of the dashboard's tier-mix chart
    (underwriting.charts.TIER_COLOURS; static/css/app.css holds the same values)."""
    index = ord(code[0].upper()) - ord("A") if code else -1
    return f"tier-{code[0].lower()}" if 0 <= index < len(TIER_COLOURS) - 1 else "tier-other"


@register.filter
def tier_label(uw: UnderwritingRequest) -> str:
    """The request's tier label in the current language."""
    return uw_selectors.request_tier_label(uw, language=get_language())


@register.filter
def manual_title(manual: RatingManual) -> str:
    """The manual's title in the current language."""
    return uw_selectors.manual_title(manual, language=get_language())


@register.filter
def who(membership: InsurerUser) -> str:
    """ "name · role" for the page header; the role only once when the user is named after it."""
    name = membership.user.get_full_name() or membership.user.get_username()
    role = str(membership.get_role_display())
    if name.casefold() in {role.casefold(), str(membership.role).casefold()}:
        return role
    return f"{name} · {role}"


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
