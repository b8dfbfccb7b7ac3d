"""The data domain's side of the resident page: one-time sign-in codes, notices to residents' phones and
what the resident may see of their own consent records.

Trust zones (docs/privacy.md, section 7): the web zone, which serves the resident page, creates a sign-in
attempt for a resident ID (as its subject key) whether or not anyone holds that ID, and later checks the
code typed against the stored keyed hash. Only the domain queue reads the phone number
(``PatientContact``): it draws the code, stores its hash and sends it. An ID the domain does not know, or
holds no number for, simply never gets a code: the page answers alike in every case.

Codes: 6 digits from ``secrets``, valid RESIDENT_CODE_SECONDS, stored as HMAC-SHA256 under a key derived
from SECRET_KEY and bound to the attempt's id, so a copy of the table does not give the codes away (a
6-digit space is searched in an instant without the key). At most RESIDENT_CODE_FAILURES wrong codes per
attempt; the lock-outs per person and per address are the resident page's (residents.lockout).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _
from django.utils.translation import override

from audit.services import audit_record, subject_ref
from config.celery import enqueue
from datadomain import messaging
from datadomain.models.consent import Consent, ConsentWithdrawal
from datadomain.models.identity import MessageDelivery, PatientContact, ResidentCode
from datadomain.services import consent_withdrawal_record

logger = logging.getLogger(__name__)

CODE_DIGITS = 6
_CODE_SALT = "datadomain.residents.code"


def code_hash(code_id: uuid.UUID | str, code: str) -> str:
    return salted_hmac(_CODE_SALT, f"{code_id}:{code}", algorithm="sha256").hexdigest()


def _send_task(name: str, *args: object) -> None:
    """Send a domain task by name once the transaction commits (web never imports the domain's tasks)."""

    def send() -> None:
        try:
            enqueue(f"datadomain.tasks.{name}", *args, what="resident message")
        except Exception as exc:  # noqa: BLE001 - in-process, a failed send must not fail the page either
            logger.warning("resident message not sent (%s)", exc.__class__.__name__)

    transaction.on_commit(send)


# --- sign-in codes ----------------------------------------------------------------------------------


@transaction.atomic
def resident_code_create(*, subject_key: str) -> uuid.UUID:
    """Start a sign-in for a subject (known or not) and ask the domain to send a code if it can."""
    code = ResidentCode.objects.create(
        id=uuid.uuid4(),
        subject_key=subject_key,
        expires_at=timezone.now() + timedelta(seconds=settings.RESIDENT_CODE_SECONDS),
    )
    _send_task("resident_code_send", str(code.pk))
    return code.pk


def resident_code_send(*, code_id: str) -> bool:
    """Domain queue: draw a code for a live attempt, keep its hash and send it to the number held for
    the person. False when there is nothing to send (no such person or number, attempt used or expired).
    Run again (a Celery retry), it draws a new code: the old one stops working."""
    attempt = ResidentCode.objects.filter(pk=code_id, used_at__isnull=True, expires_at__gt=timezone.now()).first()
    if attempt is None:
        return False
    phone = PatientContact.objects.filter(subject_key=attempt.subject_key).values_list("phone", flat=True).first()
    if not phone:
        return False
    code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
    ResidentCode.objects.filter(pk=attempt.pk).update(code_hash=code_hash(attempt.pk, code))
    minutes = max(1, settings.RESIDENT_CODE_SECONDS // 60)
    with override("zh-hans"):
        text = _("Your bureau sign-in code is %(code)s (valid %(minutes)d minutes). Never share it.") % {
            "code": code,
            "minutes": minutes,
        }
    _deliver(MessageDelivery.Kind.SIGNIN_CODE, attempt.subject_key, phone, text)
    return True


@dataclass(frozen=True)
class CodeCheck:
    subject_key: str | None
    # The attempt can take no more codes (used, expired, too many wrong ones): ask for a new code.
    spent: bool = False


def resident_code_check(*, code_id: str, code: str) -> CodeCheck:
    """Web zone: is ``code`` the one sent for attempt ``code_id``? Spends the attempt on success; counts a
    wrong code against it. Compares in constant time; an attempt that never got a code matches nothing."""
    now = timezone.now()
    try:
        key = uuid.UUID(str(code_id))
    except ValueError:
        return CodeCheck(None, spent=True)
    with transaction.atomic():
        attempt = ResidentCode.objects.select_for_update().filter(pk=key).first()
        if attempt is None or attempt.used_at is not None or attempt.expires_at <= now:
            return CodeCheck(None, spent=True)
        if attempt.failures >= settings.RESIDENT_CODE_FAILURES:
            return CodeCheck(None, spent=True)
        candidate = code_hash(attempt.pk, code.strip())
        if attempt.code_hash and hmac.compare_digest(candidate, attempt.code_hash):
            ResidentCode.objects.filter(pk=key, used_at__isnull=True).update(used_at=now)
            audit_record(
                action="resident.signin", actor="resident", target_type="subject",
                target_id=subject_ref(attempt.subject_key), detail={"subject": subject_ref(attempt.subject_key)},
            )  # fmt: skip
            return CodeCheck(attempt.subject_key)
        ResidentCode.objects.filter(pk=key).update(failures=F("failures") + 1)
        return CodeCheck(None, spent=attempt.failures + 1 >= settings.RESIDENT_CODE_FAILURES)


# --- notices ------------------------------------------------------------------------------------------


def residents_notify_on_commit(*, subject_keys: Sequence[str]) -> None:
    """Tell these residents (those the domain holds a number for) that a request awaits their consent."""
    if subject_keys:
        _send_task("residents_notify", sorted(set(subject_keys)))


def residents_notify(*, subject_keys: Sequence[str]) -> int:
    """Domain queue: send each resident with a number a notice (no insurer, no detail: just where to look)."""
    contacts = PatientContact.objects.filter(subject_key__in=list(subject_keys)).values_list("subject_key", "phone")
    sent = 0
    for subject_key, phone in contacts:
        with override("zh-hans"):
            text = _("A request for your consent awaits you: sign in at %(url)s to approve or decline it.") % {
                "url": settings.RESIDENT_PAGE_URL
            }
        try:
            _deliver(MessageDelivery.Kind.CONSENT_NOTICE, subject_key, phone, text)
            sent += 1
        except messaging.MessageError:
            continue  # recorded for staff; the resident still sees the request when they sign in
    return sent


def _deliver(kind: str, subject_key: str, phone: str, text: str) -> None:
    """Send through the configured backend and record the outcome (never the number or text) for staff.
    Raises MessageError when it did not go out, so that the task retries."""
    record = MessageDelivery.objects.create(kind=kind, subject_key=subject_key, backend=messaging.backend_name())
    try:
        messaging.send_message(messaging.Message(to=phone, text=text))
    except messaging.MessageError as exc:
        MessageDelivery.objects.filter(pk=record.pk).update(
            status=MessageDelivery.Status.FAILED, attempts=F("attempts") + 1, last_error=str(exc)[:200]
        )
        logger.warning("message to a resident failed (%s, delivery %s)", kind, record.pk)
        raise
    MessageDelivery.objects.filter(pk=record.pk).update(status=MessageDelivery.Status.SENT, attempts=F("attempts") + 1)


def contact_set(*, subject_key: str, patient_id: int, phone: str) -> None:
    """Keep the number held for a person (ingest, the demo); an empty number removes it."""
    if not phone:
        PatientContact.objects.filter(patient_id=patient_id).delete()
        return
    PatientContact.objects.update_or_create(
        patient_id=patient_id, defaults={"subject_key": subject_key, "phone": phone}
    )


# --- the resident's own consents ------------------------------------------------------------------------


@dataclass(frozen=True)
class ResidentConsent:
    insurer_slug: str
    reference_kind: str  # "resident" (confirmed on the page) or "form" (presented by the insurer)
    signed_at: datetime
    expires_at: datetime | None
    scope: list[str]


def resident_consents_active(*, subject_key: str) -> list[ResidentConsent]:
    """The subject's consent records that are in force now (not expired, not withdrawn), newest first."""
    now = timezone.now()
    withdrawn: dict[str, datetime] = {}
    for slug, moment in ConsentWithdrawal.objects.filter(subject_key=subject_key).values_list(
        "insurer_slug", "withdrawn_at"
    ):
        withdrawn[slug] = max(moment, withdrawn.get(slug, moment))
    rows = Consent.objects.filter(subject_key=subject_key, withdrawn_at__isnull=True).order_by("-signed_at")
    active = []
    for consent in rows:
        stop = max((m for m in (withdrawn.get(""), withdrawn.get(consent.insurer_slug)) if m), default=None)
        if stop is not None and consent.signed_at <= stop:
            continue
        if consent.expires_at is not None and consent.expires_at <= now:
            continue
        kind = "resident" if consent.reference.startswith(RESIDENT_REFERENCE_PREFIX) else "form"
        active.append(ResidentConsent(consent.insurer_slug, kind, consent.signed_at, consent.expires_at, consent.scope))
    return active


RESIDENT_REFERENCE_PREFIX = "resident-confirmation:"


def resident_consent_withdraw(*, subject_key: str, insurer_slug: str) -> int:
    """The resident withdraws consent for one insurer from now (PIPL Art. 15)."""
    return len(
        consent_withdrawal_record(subject_key=subject_key, insurer_slug=insurer_slug, at=timezone.now(), by="resident")
    )


def contact_set_for_subject(*, subject_key: str, phone: str) -> bool:
    """:func:`contact_set` for a subject the domain knows (the demo); False when it knows none."""
    from datadomain.models.identity import Patient

    patient_id = Patient.objects.filter(subject_key=subject_key).values_list("pk", flat=True).first()
    if patient_id is None:
        return False
    contact_set(subject_key=subject_key, patient_id=patient_id, phone=phone)
    return True
