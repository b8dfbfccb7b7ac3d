"""The dashboard: volume per day, tier mix per manual, latency percentiles."""

from __future__ import annotations

from datetime import datetime, time

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from insurer_portal import selectors
from insurer_portal.views.access import portal_view
from tenants.models import InsurerUser
from underwriting import charts
from underwriting import selectors as uw_selectors

WINDOW_DAYS = 30


@portal_view()
def dashboard(request: HttpRequest, membership: InsurerUser) -> HttpResponse:
    insurer_id = membership.insurer_id
    days = selectors.volume_per_day(insurer_id=insurer_id, days=WINDOW_DAYS)
    # Every figure covers the chart's calendar days, so the parts add up to the chart's total.
    since = timezone.make_aware(datetime.combine(days[0].day, time.min))
    mix_rows, legend, mix_height = charts.tier_mix_chart(
        selectors.tier_mix_per_manual(insurer_id=insurer_id, since=since)
    )
    context = {
        "membership": membership,
        "window_days": WINDOW_DAYS,
        "volume": charts.volume_chart(days),
        "mix_rows": mix_rows,
        "legend": legend,
        "mix_height": mix_height,
        "latency": selectors.latency_percentiles(insurer_id=insurer_id, since=since),
        "kpis": selectors.status_breakdown(insurer_id=insurer_id, since=since),
        "recent": uw_selectors.requests_for_insurer(insurer_id=insurer_id)[:8],
    }
    return render(request, "portal/dashboard.html", context)
