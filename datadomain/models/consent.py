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
