from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class RatingManual(models.Model):
    """One version of a rating manual. Approved versions are immutable (services refuse changes)."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("awaiting approval")
        APPROVED = "approved", _("approved")
        RETIRED = "retired", _("retired")

    slug = models.SlugField(_("slug"), max_length=63)
    version = models.PositiveIntegerField(_("version"))
    title = models.CharField(_("title"), max_length=300)
    owner = models.CharField(_("owner"), max_length=63, help_text=_("'builtin' or the owning insurer's slug"))
    document = models.TextField(_("YAML document"))
    document_sha256 = models.CharField(_("SHA-256"), max_length=64)
    parsed = models.JSONField(_("parsed document"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.DRAFT)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("uploaded by")
    )
    uploaded_at = models.DateTimeField(_("uploaded"), auto_now_add=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
        verbose_name=_("approved by"),
    )
    approved_at = models.DateTimeField(_("approved"), null=True, blank=True)

    class Meta:
        verbose_name = _("rating manual")
        verbose_name_plural = _("rating manuals")
        ordering = ["slug", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["slug", "version"], name="uw_manual_slug_version"),
            models.CheckConstraint(
                condition=~models.Q(status="approved") | models.Q(approved_by__isnull=False),
                name="uw_manual_approved_has_approver",
            ),
            models.CheckConstraint(
                condition=models.Q(approved_by__isnull=True) | ~models.Q(approved_by=models.F("uploaded_by")),
                name="uw_manual_four_eyes",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.slug} v{self.version}"


# What a request's ``decision`` (a manual tier's decision, underwriting.manual_format.DECISIONS) says in the
# reader's language: the portal's pages and downloads and the manual review show these.
DECISION_LABELS = {
    "accept": pgettext_lazy("underwriting decision", "accept"),
    "rate": pgettext_lazy("underwriting decision", "rate"),
    "postpone": pgettext_lazy("underwriting decision", "postpone"),
    "refer": pgettext_lazy("underwriting decision", "refer"),
    "decline": pgettext_lazy("underwriting decision", "decline"),
}


class RequestStatus(models.TextChoices):
    RECEIVED = "received", _("received")
    VERIFYING = "verifying", _("verifying")
    # Waiting for the resident's own confirmation (insurers in resident-confirmation mode, ConsentPolicy).
    AWAITING_CONSENT = "awaiting_consent", _("awaiting the resident's consent")
    EXTRACTING = "extracting", _("extracting features")
    SCORING = "scoring", _("scoring")
    TIERING = "tiering", _("tiering")
    COMPLETED = "completed", _("completed")
    REJECTED = "rejected", _("rejected")
    UNRATED = "unrated", _("unrated")
    FAILED = "failed", _("failed")


TERMINAL_STATUSES = frozenset(
    {RequestStatus.COMPLETED, RequestStatus.REJECTED, RequestStatus.UNRATED, RequestStatus.FAILED}
)


class RejectReason(models.TextChoices):
    # One reason for an unknown resident ID, a name that does not match it and consent that does not cover
    # the request alike: before consent is established, no answer may tell whether a person exists or what
    # their name is. Bureau staff see which check failed (VerificationFailure, the audit trail).
    NOT_VERIFIED = (
        "not_verified",
        _(
            "identity and consent could not both be verified; check the resident ID, name and signed consent, "
            "then submit a new request"
        ),
    )
    RATE_LIMITED = "rate_limited", _("rate limited")
    MANUAL_NOT_APPROVED = "manual_not_approved", _("manual not approved")
    INVALID_INPUT = "invalid_input", _("invalid input")
    CONSENT_DECLINED = "consent_declined", _("the resident declined consent")
    # Also the end of every request nobody could confirm (unknown ID, wrong name, no phone held): to the
    # insurer it looks exactly like a resident who did not answer (docs/privacy.md, section 7).
    CONSENT_EXPIRED = "consent_expired", _("the resident did not confirm consent in time")
    # The consent a request was admitted on was withdrawn (or ended) before its records were read: the
    # extraction stage checks it again (services/pipeline.py) and stops the request there.
    CONSENT_WITHDRAWN = "consent_withdrawn", _("consent was withdrawn before the assessment")


class UnderwritingRequest(models.Model):
    """An insurer's request for one applicant. Holds the pseudonymous subject key and a masked ID only."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    insurer = models.ForeignKey(
        "tenants.Insurer", on_delete=models.PROTECT, related_name="requests", verbose_name=_("insurer")
    )
    reference = models.CharField(_("insurer reference"), max_length=100)
    # The API key the request came through (none for the portal and batches): misuse flags count by key.
    api_key = models.ForeignKey(
        "tenants.ApiKey",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("API key"),
    )
    idempotency_key = models.CharField(_("idempotency key"), max_length=200, blank=True, default="")
    body_sha256 = models.CharField(_("request body SHA-256"), max_length=64, blank=True, default="")
    subject_key = models.CharField(_("subject key"), max_length=64, db_index=True)
    resident_id_masked = models.CharField(_("resident ID (masked)"), max_length=18)
    manual = models.ForeignKey(RatingManual, on_delete=models.PROTECT, null=True, blank=True, related_name="requests")
    manual_slug = models.CharField(_("manual asked for"), max_length=63)
    consent_id = models.BigIntegerField(_("consent record"), null=True, blank=True)
    as_of = models.DateField(_("request date (Asia/Shanghai)"))
    status = models.CharField(_("status"), max_length=16, choices=RequestStatus.choices, default=RequestStatus.RECEIVED)
    reason = models.CharField(_("reason"), max_length=32, choices=RejectReason.choices, blank=True, default="")
    tier_code = models.CharField(_("tier"), max_length=16, blank=True, default="")
    tier_label = models.CharField(_("tier label"), max_length=100, blank=True, default="")
    decision = models.CharField(_("decision"), max_length=16, blank=True, default="")
    table_rating = models.CharField(_("table rating"), max_length=16, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    # Set by the submitting service from the same clock reading as a rejection's completed_at, so that
    # completed_at is never earlier (auto_now_add would read the clock again, later, at the INSERT).
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False, db_index=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    completed_at = models.DateTimeField(_("completed"), null=True, blank=True)

    class Meta:
        verbose_name = _("underwriting request")
        verbose_name_plural = _("underwriting requests")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["insurer", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="uw_request_idempotency",
            ),
        ]
        indexes = [
            models.Index(fields=["insurer", "-created_at"], name="uw_request_insurer_created"),
            models.Index(fields=["insurer", "subject_key", "created_at"], name="uw_request_rate"),
            models.Index(fields=["status", "updated_at"], name="uw_request_status_updated"),
        ]

    def __str__(self) -> str:
        return f"{self.reference} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class VerificationFailure(models.Model):
    """Which check failed for a request refused as ``not_verified``: for bureau staff (the admin's audit
    trail, misuse flags) and never for the insurer, who gets the same reason whichever it was. ``held``:
    refused at extraction because the subject's records are incompletely linked (services/pipeline.py)."""

    class Identity(models.TextChoices):
        MATCHED = "matched", _("name matches the resident ID")
        MISMATCH = "mismatch", _("name does not match the resident ID")
        UNKNOWN = "unknown", _("resident ID unknown to the data domain")
        # Found at extraction, after verification: the subject's records are held (record linkage).
        HELD = "held", _("records incompletely linked or held in the data domain")

    class Consent(models.TextChoices):
        VALID = "valid", _("valid")
        INVALID = "invalid", _("does not cover underwriting at the time (scope or dates)")
        WITHDRAWN = "withdrawn", _("withdrawn")
        NO_FORM = "no_form", _("signed form not in the bureau's consent store")
        UNCHECKED = "", _("not recorded (refused before consent was checked)")

    request = models.OneToOneField(
        UnderwritingRequest, on_delete=models.CASCADE, primary_key=True, related_name="verification_failure"
    )
    identity = models.CharField(_("identity"), max_length=16, choices=Identity.choices)
    consent = models.CharField(_("consent"), max_length=16, choices=Consent.choices, blank=True, default="")
    created_at = models.DateTimeField(_("recorded"), auto_now_add=True)

    class Meta:
        verbose_name = _("verification failure")
        verbose_name_plural = _("verification failures")

    def __str__(self) -> str:
        return f"{self.request_id}: identity {self.identity}, consent {self.consent or '-'}"


class AdmissionLock(models.Model):
    """One row per subject ever asked about. A submission locks its subjects' rows, in key order, before
    it counts their requests against the rate limits and inserts its own, so that concurrent submissions
    about one person are admitted one after another, never together past a limit. On PostgreSQL that is
    the row lock its upsert takes; on SQLite the upsert that opens the transaction takes the database's
    write lock, which serialises submissions whole."""

    subject_key = models.CharField(_("subject key"), max_length=64, primary_key=True)
    locked_at = models.DateTimeField(_("last locked"))

    class Meta:
        verbose_name = _("admission lock")
        verbose_name_plural = _("admission locks")

    def __str__(self) -> str:
        return self.subject_key[:12]


class RequestStageData(models.Model):
    """A request's data for one stage of its computation, kept beside the request row so that reads of
    requests never load it, and owned by the trust zones that stage involves (ops/db_zones.py)."""

    request = models.OneToOneField(UnderwritingRequest, on_delete=models.CASCADE, primary_key=True, related_name="+")
    expires_at = models.DateTimeField(_("grant expires"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return str(self.request_id)


class ScoringInput(RequestStageData):
    """What the data domain hands the scoring workers for one request: the subject's encrypted features,
    the MAC tag material that binds the custodian's answer to this request's score, and the terms the
    grant pinned. Written by domain workers, read and deleted by scoring workers; no other zone reads it.
    Deleted once the query is built."""

    key_id = models.CharField(_("key id"), max_length=64)
    slot_bits = models.PositiveSmallIntegerField(_("slot bits"))
    features = models.TextField(_("encrypted features (JSON)"))
    tags = models.TextField(_("tag material (JSON)"))

    class Meta:
        verbose_name = _("scoring input")
        verbose_name_plural = _("scoring inputs")


class TieringSecret(RequestStageData):
    """The scoring worker's query and its secret un-blinding state (shuffle and sign flips) between
    sending the comparisons to the custodian and reading its answer. Only scoring workers read or write
    it (the custodian's database role cannot), and it is deleted when the request leaves ``tiering``."""

    query = models.JSONField(_("query"))
    state = models.JSONField(_("state"))

    class Meta:
        verbose_name = _("tiering secret")
        verbose_name_plural = _("tiering secrets")


class RequestEvent(models.Model):
    """One transition of a request: its timeline."""

    request = models.ForeignKey(UnderwritingRequest, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, blank=True, default="")
    to_status = models.CharField(max_length=16)
    reason = models.CharField(max_length=32, blank=True, default="")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("request event")
        verbose_name_plural = _("request events")
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status}"


class WebhookEndpoint(models.Model):
    """Where an insurer's events go. The URL is checked by underwriting.netguard when saved and again at each
    delivery; the signing secret is stored encrypted (underwriting.webhook_secrets) and shown once."""

    insurer = models.ForeignKey("tenants.Insurer", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(_("URL"), max_length=500)
    secret_encrypted = models.TextField(_("signing secret (encrypted)"), editable=False)
    secret_rotated_at = models.DateTimeField(_("signing secret issued"), null=True, blank=True, editable=False)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        ordering = ["insurer", "url"]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        DELIVERED = "delivered", _("delivered")
        FAILED = "failed", _("failed")

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField(default=uuid.uuid4, editable=False)
    event_type = models.CharField(_("event"), max_length=40)
    request = models.ForeignKey(UnderwritingRequest, on_delete=models.CASCADE, related_name="webhook_deliveries")
    payload = models.JSONField(_("payload"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    last_status_code = models.PositiveSmallIntegerField(_("last HTTP status"), null=True, blank=True)
    # Why the last attempt got no 2xx, in detail (connection refused, timeout, TLS, refused address): for the
    # bureau's staff only. Insurers see outcome_for_insurer(), which cannot tell those apart (no port scans).
    last_error = models.CharField(_("last error (bureau staff only)"), max_length=200, blank=True, default="")
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "request", "event_type"], name="uw_delivery_once_per_event")
        ]

    def __str__(self) -> str:
        return f"{self.event_type} -> {self.endpoint_id} ({self.status})"

    def outcome_for_insurer(self) -> str:
        """The last attempt as the insurer may see it: the receiver's HTTP status, or one neutral outcome for
        every failure without an HTTP answer (refused address, no connection, timeout, TLS error alike)."""
        return webhook_outcome_for_insurer(self.last_status_code, attempted=self.attempts > 0)


def webhook_outcome_for_insurer(status_code: int | None, *, attempted: bool = True) -> str:
    if status_code is not None:
        if 300 <= status_code < 400:
            return _("HTTP %(code)s (redirects are not followed)") % {"code": status_code}
        return _("HTTP %(code)s") % {"code": status_code}
    return str(_("No HTTP answer")) if attempted else ""


class FlagKind(models.TextChoices):
    SUBJECT_MANUALS = "subject_manuals", _("one subject, many manuals")
    SUBJECT_INSURERS = "subject_insurers", _("one subject, many insurers")
    BURST = "burst", _("burst of requests")
    IDENTITY_MISMATCHES = "identity_mismatches", _("many identity mismatches")
    CUSTODIAN_MISUSE = "custodian_misuse", _("custodian query failed its checks")


class MisuseFlag(models.Model):
    """A pattern of requests that looks like probing: an oracle (one subject scored again and again, by
    several manuals or insurers), a burst, or name fishing (identity mismatches).

    Raised by ``underwriting.services.flags.flags_evaluate`` (Celery beat) and reviewed by bureau staff.
    Names subjects only by their pseudonymous key, never a resident ID or name. At most one flag per
    ``condition`` is open or acknowledged at a time, so re-evaluating never duplicates one.
    """

    class Status(models.TextChoices):
        OPEN = "open", _("open")
        ACKNOWLEDGED = "acknowledged", _("acknowledged")
        CLOSED = "closed", _("closed")

    kind = models.CharField(_("kind"), max_length=32, choices=FlagKind.choices)
    # What the flag is about, e.g. "burst|insurer:3|key:7"; one open or acknowledged flag per condition.
    condition = models.CharField(_("condition"), max_length=200, editable=False)
    insurer = models.ForeignKey(
        "tenants.Insurer",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("insurer"),
    )
    api_key = models.ForeignKey(
        "tenants.ApiKey",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("API key"),
    )
    subject_key = models.CharField(_("subject key"), max_length=64, blank=True, default="")
    window_start = models.DateTimeField(_("first request counted"))
    window_end = models.DateTimeField(_("last request counted"))
    window_seconds = models.PositiveIntegerField(_("window (seconds)"))
    count = models.PositiveIntegerField(_("count"))
    threshold = models.PositiveIntegerField(_("threshold"))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.OPEN)
    raised_at = models.DateTimeField(_("raised"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("reviewed by"),
    )
    reviewed_at = models.DateTimeField(_("reviewed"), null=True, blank=True)
    review_note = models.CharField(_("review note"), max_length=500, blank=True, default="")

    class Meta:
        verbose_name = _("misuse flag")
        verbose_name_plural = _("misuse flags")
        ordering = ["-raised_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["condition"], condition=~models.Q(status="closed"), name="uw_flag_one_open_per_condition"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def subject_ref(self) -> str:
        return self.subject_key[:12]


class RateLimitOverride(models.Model):
    """A bureau officer's permission for an insurer to underwrite one subject again past the rate limit:
    ``allowance`` more requests until ``expires_at``. Granting and each use are audited."""

    insurer = models.ForeignKey(
        "tenants.Insurer", on_delete=models.PROTECT, related_name="+", verbose_name=_("insurer")
    )
    subject_key = models.CharField(_("subject key"), max_length=64, db_index=True)
    reason = models.CharField(_("reason"), max_length=500)
    allowance = models.PositiveSmallIntegerField(_("extra requests allowed"), default=1)
    used = models.PositiveSmallIntegerField(_("extra requests used"), default=0)
    expires_at = models.DateTimeField(_("expires"))
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("granted by")
    )
    granted_at = models.DateTimeField(_("granted"), auto_now_add=True)

    class Meta:
        verbose_name = _("rate-limit override")
        verbose_name_plural = _("rate-limit overrides")
        ordering = ["-granted_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(used__lte=models.F("allowance")), name="uw_override_within_allowance"
            )
        ]

    def __str__(self) -> str:
        return f"{self.insurer_id}:{self.subject_key[:12]} ({self.used}/{self.allowance})"

    @property
    def subject_ref(self) -> str:
        return self.subject_key[:12]


class ConsentMode(models.TextChoices):
    """How an insurer proves that the applicant agreed (chosen by the bureau per insurer)."""

    # The insurer's assertion: a reference, dates, scope and the SHA-256 of a form the bureau may never
    # receive. Kept only for insurers not yet moved to one of the modes below.
    DECLARED = "declared", _("declared by the insurer (form hash only)")
    FORM = "form", _("signed form held in the consent store")
    RESIDENT = "resident", _("confirmed by the resident through the bureau")


class ConsentPolicy(models.Model):
    """The bureau's choice of consent proof for one insurer. An insurer without a row follows
    UNDERWRITING_CONSENT_MODE."""

    insurer = models.OneToOneField(
        "tenants.Insurer",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="+",
        verbose_name=_("insurer"),
    )
    mode = models.CharField(_("consent proof"), max_length=16, choices=ConsentMode.choices)
    confirmation_hours = models.PositiveSmallIntegerField(
        _("hours the resident has to confirm"),
        default=72,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 30)],
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    updated_by = models.CharField(_("updated by"), max_length=150, blank=True, default="")

    class Meta:
        verbose_name = _("consent policy")
        verbose_name_plural = _("consent policies")

    def __str__(self) -> str:
        return f"{self.insurer_id}: {self.mode}"


class ConsentConfirmation(models.Model):
    """A request waiting for (or decided by) the resident's own confirmation.

    ``reachable`` is for bureau staff and the resident page only: whether the identity check matched, so
    that the resident may be asked. The insurer sees the same ``awaiting_consent`` either way, and an
    unreachable confirmation simply expires like an unanswered one."""

    class Status(models.TextChoices):
        PENDING = "pending", _("waiting for the resident")
        APPROVED = "approved", _("approved by the resident")
        DECLINED = "declined", _("declined by the resident")
        EXPIRED = "expired", _("expired")

    request = models.OneToOneField(
        UnderwritingRequest, on_delete=models.CASCADE, primary_key=True, related_name="confirmation"
    )
    subject_key = models.CharField(_("subject key"), max_length=64, db_index=True)
    reachable = models.BooleanField(_("identity matched (resident may be asked)"), default=False)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    expires_at = models.DateTimeField(_("expires"), db_index=True)
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("consent confirmation")
        verbose_name_plural = _("consent confirmations")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "expires_at"], name="uw_confirmation_due")]

    def __str__(self) -> str:
        return f"{self.request_id} ({self.status})"

    @property
    def subject_ref(self) -> str:
        return self.subject_key[:12]
