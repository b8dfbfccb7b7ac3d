from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class IngestCheckpoint(models.Model):
    """How far ``ingest_fhir`` got in one input file, committed with each batch so a crashed run resumes."""

    path = models.CharField(_("path"), max_length=1000, unique=True)
    fingerprint = models.CharField(_("fingerprint"), max_length=80)
    lines_done = models.BigIntegerField(_("lines done"), default=0)
    completed = models.BooleanField(_("completed"), default=False)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("ingest checkpoint")
        verbose_name_plural = _("ingest checkpoints")

    def __str__(self) -> str:
        return self.path


class QuarantinedLine(models.Model):
    """An input line that could not be ingested. The raw line stays inside the domain (admin only);
    ``reason`` never repeats identifiers from it."""

    source_path = models.CharField(_("file"), max_length=1000)
    line_number = models.BigIntegerField(_("line"))
    reason_code = models.CharField(_("reason code"), max_length=40)
    reason = models.CharField(_("reason"), max_length=300)
    raw_line = models.TextField(_("raw line"))
    # A record held because its subject Patient was not yet known (``dangling_subject``): the Patient id it
    # references. Ingest re-reads the held records whose Patient has since arrived (ingest.runner).
    subject_ref = models.CharField(_("subject Patient id"), max_length=64, blank=True, db_default="")
    created_at = models.DateTimeField(_("quarantined"), auto_now_add=True)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)

    class Meta:
        verbose_name = _("quarantined line")
        verbose_name_plural = _("quarantined lines")
        ordering = ["source_path", "line_number"]
        constraints = [
            models.UniqueConstraint(fields=["source_path", "line_number"], name="dd_quarantine_unique_line"),
        ]
        indexes = [
            # Only the open held records: the few rows ingest and record linkage look up by Patient id.
            models.Index(
                fields=["subject_ref"],
                condition=models.Q(reason_code="dangling_subject", resolved_at__isnull=True),
                name="dd_quarantine_held",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source_path}:{self.line_number}"


class IngestBatch(models.Model):
    """One committed ingest transaction; its id stamps every row the batch writes.

    A subject's *records stamp* is the sum of the stamps of its patient row and all its records. Any
    write replaces a row's stamp with a new, different batch id (a batch writes a resource at most
    once), and a new row adds one, so the sum changes whenever the subject's records change, whatever
    order concurrent batches commit in. Stored encrypted vectors remember the stamp they were computed
    from; ingest never has to touch them or the patient row to invalidate them.
    """

    started_at = models.DateTimeField(_("started"), auto_now_add=True)

    class Meta:
        verbose_name = _("ingest batch")
        verbose_name_plural = _("ingest batches")

    def __str__(self) -> str:
        return str(self.pk)
