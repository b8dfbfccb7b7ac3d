"""Submit one request, follow it live, list and read requests."""

from __future__ import annotations

import uuid

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import get_language

from audit.errors import add_to_form
from datadomain.consent_store import consent_artifact_store
from insurer_portal import selectors
from insurer_portal.forms import RequestFilterForm, RequestSubmitForm
from insurer_portal.views.access import portal_view
from tenants.models import InsurerUser
from underwriting import selectors as uw_selectors
from underwriting.errors import UnderwritingError
from underwriting.models import UnderwritingRequest
from underwriting.services.requests import Applicant, ConsentEvidence, request_submit, submit_item

PAGE_SIZE = 25
# The submission's input field paths (as the API names them) and this form's fields.
SUBMIT_FIELDS = {
    "applicant.resident_id": "resident_id",
    "applicant.name": "name",
    "consent.reference": "consent_reference",
}


def _manual_choices(membership: InsurerUser) -> list[tuple[str, str]]:
    manuals = uw_selectors.manuals_for_insurer(insurer_slug=membership.insurer.slug).order_by("slug", "-version")
    seen: dict[str, str] = {}
    for manual in manuals:
        title = uw_selectors.manual_title(manual, language=get_language())
        seen.setdefault(manual.slug, f"{title} ({manual.slug} v{manual.version})")
    return list(seen.items())


@portal_view()
def request_new(request: HttpRequest, membership: InsurerUser) -> HttpResponse:
    form = RequestSubmitForm(request.POST or None, request.FILES or None, manuals=_manual_choices(membership))
    token = request.POST.get("submission", "") or uuid.uuid4().hex
    if request.method == "POST" and form.is_valid():
        try:
            created = _submit(form.cleaned_data, membership, token)
        except UnderwritingError as exc:
            add_to_form(form, exc, fields=SUBMIT_FIELDS)
        else:
            return redirect("portal:request-detail", request_id=created.pk)
    return render(request, "portal/requests/new.html", {"form": form, "membership": membership, "submission": token})


def _submit(data: dict[str, object], membership: InsurerUser, token: str) -> UnderwritingRequest:
    """The signed form goes only to the domain's consent store; the request carries its SHA-256."""
    upload = data["consent_file"]
    digest = consent_artifact_store(content=upload.read())  # type: ignore[attr-defined]
    consent = ConsentEvidence(
        reference=str(data["consent_reference"]),
        signed_at=data["consent_signed_at"],  # type: ignore[arg-type]
        expires_at=data.get("consent_expires_at"),  # type: ignore[arg-type]
        scope=list(data["consent_scope"]),  # type: ignore[call-overload]
        artifact_sha256=digest,
    )
    sent = {name: str(data[name]) for name in ("reference", "resident_id", "name", "manual")}
    item = submit_item(
        reference=sent["reference"],
        applicant=Applicant(resident_id=sent["resident_id"], name=sent["name"]),
        manual_slug=sent["manual"],
        consent=consent,
        # One form rendering submits once, however often the button is pressed.
        idempotency_key=f"portal-{token}"[:200],
        sent={**sent, "consent": consent.reference, "sha256": digest},
    )
    created, _ = request_submit(insurer_id=membership.insurer_id, insurer_slug=membership.insurer.slug, item=item)
    return created


def _load(membership: InsurerUser, request_id: str) -> UnderwritingRequest:
    found = uw_selectors.request_for_insurer(insurer_id=membership.insurer_id, request_id=request_id)
    if found is None:
        raise Http404
    return found


@portal_view()
def request_detail(request: HttpRequest, membership: InsurerUser, request_id: str) -> HttpResponse:
    found = _load(membership, request_id)
    return render(
        request,
        "portal/requests/detail.html",
        {"membership": membership, "uw": found, "events": list(found.events.all())},
    )


@portal_view()
def request_status(request: HttpRequest, membership: InsurerUser, request_id: str) -> HttpResponse:
    """The live part of the detail page, polled by htmx until the request is terminal."""
    found = _load(membership, request_id)
    return render(request, "portal/requests/_status.html", {"uw": found, "events": list(found.events.all())})


@portal_view()
def request_list(request: HttpRequest, membership: InsurerUser) -> HttpResponse:
    manuals = [slug for slug, _label in _manual_choices(membership)]
    tiers = selectors.tier_codes_for_insurer(insurer_id=membership.insurer_id)
    form = RequestFilterForm(request.GET or None, tiers=tiers, manuals=manuals)
    filters = selectors.RequestFilters()
    if form.is_valid():
        data = form.cleaned_data
        filters = selectors.RequestFilters(
            status=data["status"] or "",
            tier=data["tier"] or "",
            manual=data["manual"] or "",
            created_from=data["created_from"],
            created_to=data["created_to"],
            q=(data["q"] or "").strip(),
        )
    queryset = selectors.requests_filtered(insurer_id=membership.insurer_id, filters=filters)
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"membership": membership, "form": form, "page": page, "filters": filters, "query": query.urlencode()}
    return render(request, "portal/requests/list.html", context)
