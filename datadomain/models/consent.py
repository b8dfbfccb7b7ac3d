from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Consent(models.Model):
    """An applicant's consent evidence, as presented by an insurer, for one subject."""

    insurer_slug = models.SlugField(_("insurer"), max_length=63)
    subject_key = models.CharField(_("subject key"), max_length=64, db_index=True)
    reference = models.CharField(_("reference"), max_length=200)
    signed_at = models.DateTimeField(_("signed"))
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    scope = models.JSONField(_("scope"), default=list)
    artifact_sha256 = models.CharField(_("artifact SHA-256"), max_length=64)
    withdrawn_at = models.DateTimeField(_("withdrawn"), null=True, blank=True)
    created_at = models.DateTimeField(_("recorded"), auto_now_add=True)

    class Meta:
        verbose_name = _("consent")
        verbose_name_plural = _("consents")
        constraints = [
            models.UniqueConstraint(
                fields=["insurer_slug", "subject_key", "reference"], name="dd_consent_unique_reference"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.insurer_slug}:{self.reference}"


class ConsentWithdrawal(models.Model):
    """A subject's withdrawal of consent, from ``withdrawn_at`` on, for one insurer or (``insurer_slug``
    empty) for every insurer.

    It stops every consent of that subject and insurer signed at or before ``withdrawn_at``, whatever its
    reference or form, including evidence an insurer presents only later: marking the consent rows that
    exist at the time is not enough, since the same signed form can come back under a new reference.
    Kept, like the consents, as pseudonymous evidence (subject key only)."""

    insurer_slug = models.CharField(_("insurer"), max_length=63, blank=True, help_text=_("empty: every insurer"))
    subject_key = models.CharField(_("subject key"), max_length=64)
    withdrawn_at = models.DateTimeField(_("withdrawn"))
    recorded_by = models.CharField(_("recorded by"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("recorded"), auto_now_add=True)

    class Meta:
        verbose_name = _("consent withdrawal")
        verbose_name_plural = _("consent withdrawals")
        indexes = [models.Index(fields=["subject_key", "insurer_slug"], name="dd_withdrawal_subject")]

    def __str__(self) -> str:
        return f"{self.insurer_slug or '*'}:{self.subject_key[:12]}@{self.withdrawn_at:%Y-%m-%d}"
