from __future__ import annotations

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import audit_record
from underwriting import selectors
from underwriting.errors import UnderwritingError
from underwriting.manual_format import ManualFormatError, content_sha256, parse_manual
from underwriting.models import RatingManual


@transaction.atomic
def manual_upload(*, text: str, uploaded_by: User) -> RatingManual:
    """Store a new manual version as a draft. The same slug and version may not be uploaded twice.

    Rating manuals are the bureau's: only a bureau staff account may author one (an insurer's portal
    user is never staff), whoever the manual's ``owner`` is."""
    _require_staff(uploaded_by, "author_not_staff", "author")
    try:
        document = parse_manual(text, known_features=selectors.known_feature_names())
    except ManualFormatError as exc:
        raise UnderwritingError("invalid_manual", str(exc), fields={"document": exc.problems}) from exc
    if RatingManual.objects.filter(slug=document.slug, version=document.version).exists():
        raise UnderwritingError(
            "manual_version_exists",
            f"{document.slug} version {document.version} exists already; approved versions never change, "
            "so upload the change as a new version.",
        )
    try:
        manual = RatingManual.objects.create(
            slug=document.slug,
            version=document.version,
            title=document.title,
            owner=document.owner,
            document=text,
            document_sha256=content_sha256(text),
            parsed=document.as_dict(),
            uploaded_by=uploaded_by,
        )
    except IntegrityError as exc:  # a concurrent upload of the same version
        raise UnderwritingError("manual_version_exists", f"{document.slug} v{document.version} exists") from exc
    _audit_manual("manual.upload", manual, actor=uploaded_by.get_username())
    return manual


def _require_staff(user: User, code: str, part: str) -> None:
    if not user.is_staff:
        raise UnderwritingError(
            code,
            f"Only bureau staff may be a rating manual's {part}; '{user.get_username()}' is not a staff account.",
        )


def _audit_manual(action: str, manual: RatingManual, *, actor: str = "") -> None:
    audit_record(
        action=action,
        actor=actor,
        target_type="rating_manual",
        target_id=str(manual.pk),
        detail={"slug": manual.slug, "version": manual.version, "sha256": manual.document_sha256},
    )


@transaction.atomic
def manual_approve(*, slug: str, version: int, approved_by: User) -> RatingManual:
    """Approve a draft (four-eyes: never by its author, and only by bureau staff). Approval freezes the
    version."""
    _require_staff(approved_by, "approver_not_staff", "approver")
    manual = RatingManual.objects.select_for_update().filter(slug=slug, version=version).first()
    if manual is None:
        raise UnderwritingError("manual_not_found", f"No manual {slug} version {version}.")
    if manual.uploaded_by_id == approved_by.pk:
        raise UnderwritingError("four_eyes", "A manual must be approved by someone other than its author.")
    if manual.status != RatingManual.Status.DRAFT:
        raise UnderwritingError("manual_not_draft", f"{slug} v{version} is {manual.status}, not awaiting approval.")
    RatingManual.objects.filter(pk=manual.pk, status=RatingManual.Status.DRAFT).update(
        status=RatingManual.Status.APPROVED, approved_by=approved_by, approved_at=timezone.now()
    )
    manual.refresh_from_db()
    _audit_manual("manual.approve", manual, actor=approved_by.get_username())
    return manual


@transaction.atomic
def manual_retire(*, slug: str, version: int) -> RatingManual:
    """Withdraw an approved version from use; requests already made keep pointing at it."""
    updated = RatingManual.objects.filter(slug=slug, version=version, status=RatingManual.Status.APPROVED).update(
        status=RatingManual.Status.RETIRED
    )
    if not updated:
        raise UnderwritingError("manual_not_approved", f"{slug} v{version} is not an approved version.")
    manual = RatingManual.objects.get(slug=slug, version=version)
    _audit_manual("manual.retire", manual)
    return manual
