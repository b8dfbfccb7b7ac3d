"""The privacy officer's subject rights page in the admin: access report (on screen or CSV), consent
withdrawal, erasure, and four-eyes explanations of one decision.

The resident ID only ever travels in a POST body (never a URL) and ``sensitive_post_parameters`` keeps it
out of error reports; messages and audit events name nobody. The page that answers a POST writes the typed
ID back into its box (the admin never lets a browser cache its pages), except after an erasure. Erasure
takes two steps: the first names the subject (masked ID, key prefix) and what goes; the second, with a
confirmation ticked, erases that subject and no other. Thin: every decision is in
``underwriting.services.subjects`` and ``underwriting.services.explain``.
"""

from __future__ import annotations

from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeoutError
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from audit.approvals import ApprovalError
from audit.models import Approval
from config.celery import send
from datadomain import services as domain
from underwriting.downloads import csv_download
from underwriting.errors import UnderwritingError
from underwriting.services import explain, subjects

SERVE = "datadomain.serve_subject_rights"
EXPLAIN = "datadomain.explain_patient"


class SubjectForm(forms.Form):
    # The typed ID is written back into the page the POST answers (so a mistyped one can be corrected and
    # the next operation needs no retyping); that page is never cached (admin_view) and the ID never
    # reaches a URL. The browser is asked not to remember it.
    resident_id = forms.CharField(
        label=gettext_lazy("Resident ID"),
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "characters"}),
    )
    confirm_erasure = forms.BooleanField(
        label=gettext_lazy("I have verified the subject's identity and their request for erasure"), required=False
    )
    # The key prefix of the subject the confirmation step named: the erasure goes ahead only for that one.
    erase_subject = forms.CharField(required=False, max_length=12, widget=forms.HiddenInput)

    def clean_resident_id(self) -> str:
        value: str = self.cleaned_data["resident_id"]
        if not domain.resident_id_is_valid(value):
            raise forms.ValidationError(gettext_lazy("This is not a valid resident ID."))  # never echo the value
        return value


class ExplanationAskForm(forms.Form):
    request_id = forms.UUIDField()
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=300, required=False)


SUBJECT_OPS = ("report", "download", "withdraw", "erase_review", "erase", "cancel_erasure")


def _subject_op(request: HttpRequest, op: str, form: SubjectForm, context: dict[str, Any]) -> HttpResponseBase | None:
    resident_id, actor = form.cleaned_data["resident_id"], request.user.get_username()
    if op in ("report", "download"):
        report = subjects.subject_access_report(resident_id=resident_id, by=actor, download=op == "download")
        if op == "download":
            return csv_download(subjects.access_report_rows(report), name="subject-access-report")
        context["report"] = report
    elif op == "withdraw":
        count = subjects.subject_withdraw_consent(resident_id=resident_id, by=actor)
        messages.success(request, _("%(count)d consent(s) withdrawn.") % {"count": count})
    elif op == "erase_review":
        context["erasure"] = subjects.subject_erasure_preview(resident_id=resident_id)
    elif op == "erase":
        _erase(request, form, context)
    return None


def _erase(request: HttpRequest, form: SubjectForm, context: dict[str, Any]) -> None:
    """The erasure itself, only for the subject the confirmation step named and with the box ticked;
    otherwise the confirmation step again."""
    resident_id = form.cleaned_data["resident_id"]
    preview = subjects.subject_erasure_preview(resident_id=resident_id)
    if form.cleaned_data["erase_subject"] != preview.subject_ref:
        messages.error(request, _("The resident ID is not the one reviewed: check what will be erased again."))
    elif not form.cleaned_data["confirm_erasure"]:
        messages.error(request, _("Tick the confirmation box to erase the subject."))
    else:
        erasure = subjects.subject_erase(resident_id=resident_id, by=request.user.get_username())
        messages.success(
            request,
            _("Subject erased: %(vectors)d encrypted vectors and %(records)d records destroyed.")
            % {"vectors": erasure.vectors, "records": erasure.conditions + erasure.encounters + erasure.observations},
        )
        context["erased"] = True
        return
    context["erasure"] = preview


def _explanation_op(request: HttpRequest, op: str, context: dict[str, Any]) -> None:
    if not request.user.has_perm(EXPLAIN):
        raise PermissionDenied
    if op == "ask_explanation":
        ask = ExplanationAskForm(request.POST)
        if not ask.is_valid():
            messages.error(request, _("The explanation request is incomplete."))
            return
        approval = explain.explanation_request(
            request_id=str(ask.cleaned_data["request_id"]), requested_by=request.user, reason=ask.cleaned_data["reason"]
        )
        messages.success(
            request,
            _("Explanation requested (%(approval)s): another privacy officer must approve it.")
            % {"approval": approval},
        )
    else:
        approval_id = int(request.POST.get("approval_id", "0") or 0)
        officer_id = request.user.pk
        assert officer_id is not None  # signed in: the view requires it
        context["explanation"] = _explain_in_domain(approval_id, int(officer_id))


# How long the admin waits for the data domain's worker to compute an explanation.
EXPLAIN_TIMEOUT_SECONDS = 60
DOMAIN_UNAVAILABLE = gettext_noop(
    "The data domain did not answer in time. Ask again once its workers run (see the service status)."
)


def _explain_in_domain(approval_id: int, officer_id: int) -> explain.Explanation:
    """The explanation runs on the domain queue, under the domain's database role (the web's reads no
    clinical record); the page waits for it. Its result is deleted from the result store once read."""
    result = send("underwriting.tasks.explain_subject", approval_id, officer_id, what="subject explanation")
    if result is None:
        raise UnderwritingError("domain_unavailable", _(DOMAIN_UNAVAILABLE))
    try:
        outcome = result.get(timeout=EXPLAIN_TIMEOUT_SECONDS)
    except CeleryTimeoutError:
        raise UnderwritingError("domain_unavailable", _(DOMAIN_UNAVAILABLE)) from None
    finally:
        result.forget()
    if "error" in outcome:
        raise UnderwritingError("explanation_refused", outcome["error"])
    return explain.Explanation.from_dict(outcome["explanation"])


@sensitive_post_parameters("resident_id")
@require_http_methods(["GET", "POST"])
def subject_rights(request: HttpRequest) -> HttpResponseBase:
    if not request.user.has_perm(SERVE):
        raise PermissionDenied
    op = request.POST.get("op", "")
    form = SubjectForm(request.POST if op in SUBJECT_OPS else None)
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": _("Subject rights requests"),
        "form": form,
        "may_explain": request.user.has_perm(EXPLAIN),
        "approved_explanations": Approval.objects.filter(
            kind=Approval.Kind.SUBJECT_EXPLANATION, status=Approval.Status.APPROVED
        ).select_related("requested_by", "decided_by"),
    }
    try:
        if op in ("ask_explanation", "show_explanation"):
            _explanation_op(request, op, context)
        elif form.is_bound and form.is_valid():
            response = _subject_op(request, op, form, context)
            if response is not None:
                return response
            # The ID stays for the next operation on the same subject, unless the subject is gone; the
            # confirmation box never stays ticked.
            kept = {} if context.get("erased") else {"resident_id": form.cleaned_data["resident_id"]}
            context["form"] = SubjectForm(initial=kept)
    except (UnderwritingError, ApprovalError) as exc:
        messages.error(request, exc.message)
    return TemplateResponse(request, "admin/subject_rights.html", context)
