"""Batch upload: preview with row-level errors, confirm, live progress, results download, history."""

from __future__ import annotations

import io

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from insurer_portal import selectors, services
from insurer_portal.batches import COLUMNS, BatchFileError, error_message
from insurer_portal.forms import BatchUploadForm
from insurer_portal.models import Batch
from insurer_portal.templatetags.portal import decision_label
from insurer_portal.views.access import portal_view
from tenants.models import InsurerUser
from underwriting import selectors as uw_selectors
from underwriting.downloads import csv_writer, xlsx_download
from underwriting.models import RequestStatus, UnderwritingRequest

# The codes (status, reason, decision) stay as machine-readable columns; the *_text columns say the same in
# the user's language, as do the tier label and the errors.
RESULT_COLUMNS = [
    "line", "reference", "resident_id_masked", "manual", "status", "reason", "tier", "label", "decision",
    "table_rating", "request_id", "errors", "status_text", "reason_text", "decision_text",
]  # fmt: skip


@portal_view()
def batch_list(request: HttpRequest, membership: InsurerUser) -> HttpResponse:
    form = BatchUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]  # size and kind checked by the form
        try:
            batch = services.batch_create(
                insurer=membership.insurer, user=membership.user, filename=upload.name, content=upload.read()
            )
        except BatchFileError as exc:
            form.add_error("file", str(exc))
        else:
            return redirect("portal:batch-detail", batch_id=batch.pk)
    history = Paginator(selectors.batches_for_insurer(insurer_id=membership.insurer_id), 20)
    page = history.get_page(request.GET.get("page"))
    return render(request, "portal/batches/list.html", {"membership": membership, "form": form, "page": page})


def _load(membership: InsurerUser, batch_id: int) -> Batch:
    batch = selectors.batch_for_insurer(insurer_id=membership.insurer_id, batch_id=batch_id)
    if batch is None:
        raise Http404
    return batch


def _context(batch: Batch) -> dict[str, object]:
    rows = list(batch.rows.select_related("request"))
    return {"batch": batch, "rows": rows, "progress": selectors.batch_progress(batch)}


@portal_view()
def batch_detail(request: HttpRequest, membership: InsurerUser, batch_id: int) -> HttpResponse:
    batch = _load(membership, batch_id)
    return render(request, "portal/batches/detail.html", {"membership": membership, **_context(batch)})


@portal_view()
def batch_progress(request: HttpRequest, membership: InsurerUser, batch_id: int) -> HttpResponse:
    return render(request, "portal/batches/_progress.html", _context(_load(membership, batch_id)))


@require_POST
@portal_view()
def batch_start(request: HttpRequest, membership: InsurerUser, batch_id: int) -> HttpResponse:
    batch = _load(membership, batch_id)
    if not services.batch_start(batch=batch):
        messages.info(request, _("This batch was already submitted."))
    return redirect("portal:batch-detail", batch_id=batch.pk)


@require_POST
@portal_view()
def batch_cancel(request: HttpRequest, membership: InsurerUser, batch_id: int) -> HttpResponse:
    batch = _load(membership, batch_id)
    if services.batch_cancel(batch=batch):
        messages.info(request, _("The batch was cancelled; nothing was submitted."))
    return redirect("portal:batches")


def _result_rows(batch: Batch, *, without_tier_only: bool = False) -> list[list[object]]:
    out: list[list[object]] = []
    # The manual only for its tier labels, which request_tier_label reads by key: not its text per row.
    large = [f"request__{name}" for name in uw_selectors.LARGE_REQUEST_FIELDS]
    for row in batch.rows.select_related("request__manual").defer(*large):
        uw = row.request
        if without_tier_only and uw is not None and uw.status == RequestStatus.COMPLETED:
            continue
        out.append(
            [
                row.line,
                row.reference,
                row.resident_id_masked,
                row.manual_slug,
                uw.status if uw else "",
                uw.reason if uw else "",
                uw.tier_code if uw else "",
                uw_selectors.request_tier_label(uw, language=get_language()) if uw else "",
                uw.decision if uw else "",
                uw.table_rating if uw else "",
                str(uw.pk) if uw else "",
                "; ".join(error_message(str(error)) for error in row.errors),
                *_in_words(uw),
            ]
        )
    return out


def _in_words(uw: UnderwritingRequest | None) -> list[str]:
    """Status, reason and decision in the user's language."""
    if uw is None:
        return ["", "", ""]
    return [
        str(uw.get_status_display()),
        str(uw.get_reason_display()) if uw.reason else "",
        decision_label(uw.decision),
    ]


@portal_view()
def batch_download(request: HttpRequest, membership: InsurerUser, batch_id: int, fmt: str) -> HttpResponse:
    batch = _load(membership, batch_id)
    # ?only=without-tier: the rows to look at again (errors, rejected, unrated, failed), nothing else.
    without_tier_only = request.GET.get("only") == "without-tier"
    rows = _result_rows(batch, without_tier_only=without_tier_only)
    stem = f"batch-{batch.pk}-{'without-tier' if without_tier_only else 'results'}"
    if fmt == "xlsx":
        # References are the insurer's own text: cells are neutralised and typed as text (formula injection).
        return xlsx_download([RESULT_COLUMNS, *rows], filename=f"{stem}.xlsx")
    text = io.StringIO()
    writer = csv_writer(text)
    writer.writerow(RESULT_COLUMNS)
    writer.writerows(rows)
    response = HttpResponse("\ufeff" + text.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{stem}.csv"'
    return response


@portal_view()
def batch_template(request: HttpRequest, membership: InsurerUser) -> HttpResponse:
    """An empty file with the expected header and one illustrative row (a made-up, invalid ID)."""
    text = io.StringIO()
    writer = csv_writer(text)
    writer.writerow(COLUMNS)
    writer.writerow(
        [
            "APP-0001",
            "<18-character resident ID>",
            "<name>",
            "charlson-acci",
            "CONSENT-0001",
            "2026-11-01T09:00:00+08:00",
            "",
            "<sha-256 of the signed consent form>",
        ]
    )
    response = HttpResponse("\ufeff" + text.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="batch-template.csv"'
    return response
