from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class CodeMapping(models.Model):
    """One row of a source's mapping table: a hospital's local diagnosis code, or a diagnosis text, and the
    ICD-10 codes it stands for (``datadomain.mapping``).

    ``source`` is the local coding system URI a hospital sends (``urn:hospital-a:diagnosis``), or
    ``text:`` followed by the resource's ``meta.source`` for diagnosis text without a code. A change is
    proposed (CSV import or the admin) and becomes active only when a second coder approves it
    (four-eyes); the active row it replaces is retired, and the subjects whose records it maps have
    their stored vectors made stale."""

    class Status(models.TextChoices):
        PENDING = "pending", _("awaiting approval")
        ACTIVE = "active", _("active")
        RETIRED = "retired", _("retired")
        REJECTED = "rejected", _("rejected")

    source = models.CharField(_("source"), max_length=200)
    local_code = models.CharField(_("local code or text"), max_length=200)
    icd10 = models.CharField(
        _("ICD-10 codes"), max_length=120, blank=True, help_text=_("Space-separated; empty: maps to no category.")
    )
    note = models.CharField(_("note or source cited"), max_length=300, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    proposed_by = models.CharField(_("proposed by"), max_length=150)
    proposed_at = models.DateTimeField(_("proposed at"), auto_now_add=True)
    decided_by = models.CharField(_("decided by"), max_length=150, blank=True)
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)

    class Meta:
        verbose_name = _("code mapping")
        verbose_name_plural = _("code mappings")
        constraints = [
            models.UniqueConstraint(
                fields=["source", "local_code"], condition=Q(status="active"), name="dd_mapping_one_active"
            ),
            models.UniqueConstraint(
                fields=["source", "local_code"], condition=Q(status="pending"), name="dd_mapping_one_pending"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.local_code}"


class UnmappedCode(models.Model):
    """The queue of local codes and texts, with how many condition records hold each and whether an active
    mapping (or the catalog's starter table) maps it. A snapshot refreshed by the data domain
    (``datadomain.mapping.refresh``), so that the admin, in the web zone, never reads a record."""

    source = models.CharField(_("source"), max_length=200)
    local_code = models.CharField(_("local code or text"), max_length=200)
    records = models.BigIntegerField(_("condition records"))
    mapped = models.BooleanField(_("mapped"))
    refreshed_at = models.DateTimeField(_("refreshed at"), auto_now=True)

    class Meta:
        verbose_name = _("local code in use")
        verbose_name_plural = _("local codes in use")
        ordering = ["mapped", "-records"]
        constraints = [models.UniqueConstraint(fields=["source", "local_code"], name="dd_unmapped_unique")]

    def __str__(self) -> str:
        return f"{self.source} {self.local_code}"
