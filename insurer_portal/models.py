from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from tenants.models import Insurer


class Batch(models.Model):
    """An uploaded file of applicants, submitted row by row through the same service as the API.

    Between preview and run the applicants' IDs and names are kept only sealed (AES-256-GCM, see
    ``insurer_portal.batches``) in ``sealed_rows``, which is erased once the batch has run.
    """

    class Status(models.TextChoices):
        PREVIEW = "preview", _("awaiting confirmation")
        RUNNING = "running", _("running")
        DONE = "done", _("finished")
        CANCELLED = "cancelled", _("cancelled")

    insurer = models.ForeignKey(Insurer, on_delete=models.CASCADE, related_name="batches", verbose_name=_("insurer"))
    created_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("uploaded by")
    )
    filename = models.CharField(_("file name"), max_length=200)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PREVIEW)
    total_rows = models.PositiveIntegerField(_("rows"), default=0)
    valid_rows = models.PositiveIntegerField(_("valid rows"), default=0)
    submitted_rows = models.PositiveIntegerField(_("submitted rows"), default=0)
    sealed_rows = models.BinaryField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("batch")
        verbose_name_plural = _("batches")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.filename} ({self.status})"


class BatchRow(models.Model):
    """One row of a batch: what the insurer may see of it (masked ID, errors) and its request."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="rows")
    line = models.PositiveIntegerField(_("line"))
    reference = models.CharField(_("reference"), max_length=100, blank=True, default="")
    manual_slug = models.CharField(_("manual"), max_length=63, blank=True, default="")
    resident_id_masked = models.CharField(_("resident ID (masked)"), max_length=18, blank=True, default="")
    errors = models.JSONField(_("errors"), default=list, blank=True)
    request = models.ForeignKey(
        "underwriting.UnderwritingRequest", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("batch row")
        verbose_name_plural = _("batch rows")
        ordering = ["batch", "line"]
        constraints = [models.UniqueConstraint(fields=["batch", "line"], name="portal_batch_row_line")]

    def __str__(self) -> str:
        return f"{self.batch_id}:{self.line}"
