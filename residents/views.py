"""The resident page's views: parse the form, check the session, call one service, render."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from defusedcsv import csv
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from datadomain import residents as domain_residents
from insurer_portal.lockout import counted_address
from residents import lockout, selectors
from residents.forms import CodeForm, ResidentIdForm
from tenants.models import Insurer
from underwriting.errors import UnderwritingError
from underwriting.services.confirmations import confirmation_approve, confirmation_decline

SUBJECT = "resident_subject"
SIGNED_IN_AT = "resident_signed_in_at"
PENDING_CODE = "resident_code"
PENDING_SUBJECT = "resident_code_subject"

View = Callable[..., HttpResponse]


def resident_required(view: View) -> View:
    """The signed-in resident's subject key, from a session no older than RESIDENT_SESSION_SECONDS."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        subject = request.session.get(SUBJECT)
        started = float(request.session.get(SIGNED_IN_AT, 0))
        if not subject or time.time() - started > settings.RESIDENT_SESSION_SECONDS:
            request.session.flush()
            return redirect("residents:start")
        return view(request, str(subject), *args, **kwargs)

    return wrapped


@never_cache
def start(request: HttpRequest) -> HttpResponse:
    form = ResidentIdForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        from datadomain import services as domain

        subject = domain.subject_key_for(form.cleaned_data["resident_id"])
        if not lockout.attempt_begin(subject_key=subject, address=counted_address(request), kind="send"):
            form.add_error(None, _("Too many codes were asked for. Try again later."))
        else:
            code_id = domain_residents.resident_code_create(subject_key=subject)
            request.session[PENDING_CODE] = str(code_id)
            request.session[PENDING_SUBJECT] = subject
            return redirect("residents:verify")
    return render(request, "residents/start.html", {"form": form})


@never_cache
def verify(request: HttpRequest) -> HttpResponse:
    code_id, subject = request.session.get(PENDING_CODE), request.session.get(PENDING_SUBJECT)
    if not code_id or not subject:
        return redirect("residents:start")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        address = counted_address(request)
        if not lockout.attempt_begin(subject_key=subject, address=address, kind="check"):
            form.add_error(None, _("Too many wrong codes. Try again later."))
        else:
            check = domain_residents.resident_code_check(code_id=code_id, code=form.cleaned_data["code"])
            if check.subject_key is not None and check.subject_key == subject:
                lockout.check_succeeded(subject_key=subject, address=address)
                request.session.cycle_key()
                for name in (PENDING_CODE, PENDING_SUBJECT):
                    request.session.pop(name, None)
                request.session[SUBJECT] = check.subject_key
                request.session[SIGNED_IN_AT] = time.time()
                return redirect("residents:home")
            if check.spent:
                form.add_error(None, _("This code can no longer be used. Ask for a new one."))
            else:
                form.add_error("code", _("That code is not right. Check the text message and try again."))
    return render(request, "residents/verify.html", {"form": form})


def _insurer_names(slugs: set[str]) -> dict[str, str]:
    return dict(Insurer.objects.filter(slug__in=slugs).values_list("slug", "name"))


@never_cache
@resident_required
def home(request: HttpRequest, subject: str) -> HttpResponse:
    # Withdrawal is per insurer: one line per insurer (its newest consent), however many records it holds.
    consents = list(
        {c.insurer_slug: c for c in reversed(domain_residents.resident_consents_active(subject_key=subject))}.values()
    )
    consents.sort(key=lambda c: c.signed_at, reverse=True)
    names = _insurer_names({c.insurer_slug for c in consents})
    context = {
        "pending": selectors.pending_for(subject_key=subject),
        "history": selectors.history_for(subject_key=subject),
        "consents": [(c, names.get(c.insurer_slug, c.insurer_slug)) for c in consents],
        "masked_id": _masked(request, subject),
    }
    return render(request, "residents/home.html", context)


def _masked(request: HttpRequest, subject: str) -> str:
    from underwriting.models import UnderwritingRequest

    row = UnderwritingRequest.objects.filter(subject_key=subject).values_list("resident_id_masked", flat=True).first()
    return row or ""


@require_POST
@resident_required
def decide(request: HttpRequest, subject: str, request_id: str) -> HttpResponse:
    action = request.POST.get("action")
    service = {"approve": confirmation_approve, "decline": confirmation_decline}.get(str(action))
    if service is None:
        raise Http404
    try:
        service(request_id=request_id, subject_key=subject)
    except UnderwritingError:
        raise Http404 from None  # not yours, not open, or no such request: all alike
    text = _("You approved the request.") if action == "approve" else _("You declined the request.")
    messages.success(request, text)
    return redirect("residents:home")


@require_POST
@resident_required
def withdraw(request: HttpRequest, subject: str) -> HttpResponse:
    slug = str(request.POST.get("insurer", ""))
    active = {c.insurer_slug for c in domain_residents.resident_consents_active(subject_key=subject)}
    if slug not in active:
        raise Http404
    domain_residents.resident_consent_withdraw(subject_key=subject, insurer_slug=slug)
    messages.success(request, _("Your consent was withdrawn."))
    return redirect("residents:home")


@never_cache
@resident_required
def report(request: HttpRequest, subject: str) -> HttpResponse:
    """The access report (PIPL Art. 45): every request about the resident, as CSV."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="access-report-{timezone.localdate():%Y%m%d}.csv"'
    response.write("\ufeff")  # spreadsheet programs then read UTF-8
    writer = csv.writer(response)
    writer.writerow([_("Date"), _("Insurer"), _("Purpose"), _("Manual"), _("Status"), _("Your decision")])
    for row in selectors.history_for(subject_key=subject):
        writer.writerow(
            [
                timezone.localtime(row.created_at).strftime("%Y-%m-%d %H:%M"),
                row.insurer,
                _("underwriting"),
                row.manual,
                row.status_label,
                row.decision,
            ]
        )
    return response


@require_POST
def signout(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return redirect("residents:start")
