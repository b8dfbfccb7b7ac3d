from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Patient(models.Model):
    """The identity table: the only place where resident IDs and names are stored.

    Every other table refers to a person by this row (``patient_id``) or by the pseudonymous
    ``subject_key`` = HMAC-SHA256(SUBJECT_PEPPER, resident_id).
    """

    class Sex(models.TextChoices):
        MALE = "male", _("male")
        FEMALE = "female", _("female")
        OTHER = "other", _("other")
        UNKNOWN = "unknown", _("unknown")

    resource_id = models.CharField(_("FHIR resource id"), max_length=64)
    resident_id = models.CharField(_("resident ID"), max_length=18)
    name = models.CharField(_("name"), max_length=200)
    birth_date = models.DateField(_("birth date"))
    sex = models.CharField(_("sex"), max_length=8, choices=Sex.choices, default=Sex.UNKNOWN)
    subject_key = models.CharField(_("subject key"), max_length=64)
    resident_id_masked = models.CharField(_("masked resident ID"), max_length=18)
    version_id = models.BigIntegerField(_("resource version"), default=0)
    last_updated = models.DateTimeField(_("last updated at source"))
    # The ingest batch that last wrote this row (see IngestBatch and datadomain.freshness).
    ingest_batch = models.BigIntegerField(_("ingest batch"), default=0)

    class Meta:
        verbose_name = _("patient")
        verbose_name_plural = _("patients")
        # Constraints rather than unique=True: PostgreSQL then gets no extra varchar_pattern_ops indexes.
        constraints = [
            models.UniqueConstraint(fields=["resource_id"], name="dd_patient_unique_resource"),
            models.UniqueConstraint(fields=["resident_id"], name="dd_patient_unique_resident_id"),
            models.UniqueConstraint(fields=["subject_key"], name="dd_patient_unique_subject_key"),
        ]

    def __str__(self) -> str:
        return self.resident_id_masked
