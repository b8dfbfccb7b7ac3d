"""What the signed-in resident sees: their own requests only, named by their subject key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone, translation

from underwriting.models import ConsentConfirmation, UnderwritingRequest
from underwriting.selectors import manual_title


@dataclass(frozen=True)
class HistoryRow:
    id: str
    insurer: str
    created_at: datetime
    purpose: str
    manual: str
    status: str
    status_label: str
    decision: str


def pending_for(*, subject_key: str) -> list[ConsentConfirmation]:
    """Requests the resident may approve or decline now (matched identity, still open)."""
    return list(
        ConsentConfirmation.objects.select_related("request", "request__insurer", "request__manual")
        .filter(
            subject_key=subject_key,
            reachable=True,
            status=ConsentConfirmation.Status.PENDING,
            expires_at__gt=timezone.now(),
        )
        .order_by("expires_at")
    )


def history_for(*, subject_key: str) -> list[HistoryRow]:
    """Every request ever made about the person, newest first, with the resident's decision if any."""
    rows = (
        UnderwritingRequest.objects.filter(subject_key=subject_key)
        .select_related("insurer", "manual", "confirmation")
        .order_by("-created_at")
    )
    history = []
    language = translation.get_language()
    for row in rows:
        confirmation = getattr(row, "confirmation", None)
        history.append(
            HistoryRow(
                id=str(row.pk),
                insurer=row.insurer.name,
                created_at=row.created_at,
                purpose="underwriting",
                manual=manual_title(row.manual, language=language) if row.manual else row.manual_slug,
                status=row.status,
                status_label=str(row.get_status_display()),
                decision=str(confirmation.get_status_display()) if confirmation and confirmation.reachable else "",
            )
        )
    return history
