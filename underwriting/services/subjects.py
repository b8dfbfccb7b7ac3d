"""Subject rights served by the bureau's privacy officers (PIPL Art. 24, 45, 47): an access report of
which insurers asked about a subject, consent withdrawal and erasure on request.

The officer types the resident ID into a form; it is used here to derive the pseudonymous subject key
and (for erasure) to find quarantined input lines, and it is never stored, logged or put into an audit
event or error message. Audit events name the subject by the first digits of its key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.services import audit_record, subject_ref
from datadomain import selectors as domain_selectors
from datadomain import services as domain
from datadomain.errors import DomainError
from datadomain.selectors import ConsentRow
from underwriting.errors import UnderwritingError
from underwriting.models import UnderwritingRequest


@dataclass(frozen=True)
class AccessRow:
    request_id: str
    insurer: str
    asked_at: datetime
    manual_slug: str
    manual_version: int | None
    status: str
    status_label: str
    reason: str
    tier: str
    decision: str
    completed_at: datetime | None


@dataclass(frozen=True)
class AccessReport:
    subject_ref: str
    resident_id_masked: str
    known_to_domain: bool
    generated_at: datetime
    requests: list[AccessRow] = field(default_factory=list)
    consents: list[ConsentRow] = field(default_factory=list)


def _subject_key(resident_id: str) -> str:
    if not domain.resident_id_is_valid(resident_id):
        raise UnderwritingError("invalid_input", _("This is not a valid resident ID."))
    return domain.subject_key_for(domain.resident_id_normalise(resident_id))


def _access_rows(subject_key: str) -> list[AccessRow]:
    requests = UnderwritingRequest.objects.filter(subject_key=subject_key).select_related("insurer", "manual")
    return [
        AccessRow(
            request_id=str(request.pk),
            insurer=request.insurer.name,
            asked_at=request.created_at,
            manual_slug=request.manual_slug,
            manual_version=request.manual.version if request.manual else None,
            status=request.status,
            status_label=str(request.get_status_display()),
            reason=str(request.get_reason_display()) if request.reason else "",
            tier=request.tier_code,
            decision=request.decision,
            completed_at=request.completed_at,
        )
        for request in requests.order_by("created_at", "id")
    ]


def subject_access_report(*, resident_id: str, by: str, download: bool = False) -> AccessReport:
    """Which insurers asked about the subject, when, under which manual, with what outcome; and the
    consents recorded for them. Each report is audited."""
    key = _subject_key(resident_id)
    report = AccessReport(
        subject_ref=subject_ref(key),
        resident_id_masked=domain.mask_resident_id(resident_id),
        known_to_domain=domain_selectors.subject_is_known(key),
        generated_at=timezone.now(),
        requests=_access_rows(key),
        consents=domain_selectors.subject_consents(key),
    )
    audit_record(
        action="subject.access_report",
        actor=by,
        target_type="subject",
        target_id=report.subject_ref,
        detail={"requests": len(report.requests), "consents": len(report.consents), "download": download},
    )
    return report


ACCESS_CSV_COLUMNS = [
    "request", "insurer", "asked_at", "manual", "manual_version", "status", "reason", "tier", "decision",
    "completed_at",
]  # fmt: skip


def access_report_rows(report: AccessReport) -> Iterator[list[str]]:
    """The downloadable report: one row per request (the subject's copy; no subject key)."""
    yield ACCESS_CSV_COLUMNS
    for row in report.requests:
        yield [
            row.request_id, row.insurer, row.asked_at.isoformat(), row.manual_slug,
            "" if row.manual_version is None else str(row.manual_version), row.status, row.reason, row.tier,
            row.decision, row.completed_at.isoformat() if row.completed_at else "",
        ]  # fmt: skip


@dataclass(frozen=True)
class ErasurePreview:
    """Whom an erasure would erase, as the confirmation step names them: masked ID and key prefix only."""

    subject_ref: str
    resident_id_masked: str


def subject_erasure_preview(*, resident_id: str) -> ErasurePreview:
    """Names the subject for the confirmation step before :func:`subject_erase`; reads and records nothing."""
    key = _subject_key(resident_id)
    return ErasurePreview(subject_ref=subject_ref(key), resident_id_masked=domain.mask_resident_id(resident_id))


def subject_withdraw_consent(*, resident_id: str, by: str) -> int:
    """Withdraw every open consent of the subject; returns how many (each one is audited)."""
    return domain.subject_consents_withdraw(subject_key=_subject_key(resident_id), by=by)


@transaction.atomic
def subject_erase(*, resident_id: str, by: str) -> domain.Erasure:
    """Erase the subject in the data domain (see ``datadomain.services.subject_erase``) and drop the masked
    resident ID from their requests. The requests themselves stay, under the pseudonymous key, as the
    record of what was disclosed to which insurer."""
    key = _subject_key(resident_id)
    anonymised = (
        UnderwritingRequest.objects.filter(subject_key=key).exclude(resident_id_masked="").update(resident_id_masked="")
    )
    try:
        return domain.subject_erase(resident_id=resident_id, by=by, detail={"requests_anonymised": anonymised})
    except DomainError as exc:
        raise UnderwritingError(exc.code, exc.message) from exc
