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


class PatientContact(models.Model):
    """The phone number the bureau holds for a person (FHIR ``Patient.telecom``, system ``phone``/``sms``),
    used only to send the resident their own one-time codes and notices.

    A table of its own so that only the identity zone reads it: the web zone, which serves the resident
    page, may delete it with the person (erasure) but never read a number (ops/db_zones.py). Messages go
    out from the domain queue (datadomain.residents)."""

    patient = models.OneToOneField(Patient, on_delete=models.CASCADE, primary_key=True, related_name="contact")
    subject_key = models.CharField(_("subject key"), max_length=64, unique=True)
    phone = models.CharField(_("phone"), max_length=32)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("patient contact")
        verbose_name_plural = _("patient contacts")

    def __str__(self) -> str:
        return self.subject_key[:12]


class ResidentCode(models.Model):
    """One sign-in attempt on the resident page: created by the web zone for a resident ID (as its subject
    key, whether or not the domain knows it), given a code by the domain queue only when the domain holds a
    phone number for that person. Stores the code's keyed hash, never the code."""

    id = models.UUIDField(primary_key=True)
    subject_key = models.CharField(_("subject key"), max_length=64, db_index=True)
    code_hash = models.CharField(_("code hash"), max_length=64, blank=True, default="")
    failures = models.PositiveSmallIntegerField(_("wrong codes"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"))
    used_at = models.DateTimeField(_("used"), null=True, blank=True)

    class Meta:
        verbose_name = _("resident sign-in code")
        verbose_name_plural = _("resident sign-in codes")

    def __str__(self) -> str:
        return str(self.id)


class MessageDelivery(models.Model):
    """One message to a resident's phone, for bureau staff: what kind, through which backend, whether it
    went out and why not. Never the number or the text (which may carry a code)."""

    class Kind(models.TextChoices):
        SIGNIN_CODE = "signin_code", _("sign-in code")
        CONSENT_NOTICE = "consent_notice", _("request awaiting consent")

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    subject_key = models.CharField(_("subject key"), max_length=64, db_index=True)
    backend = models.CharField(_("backend"), max_length=32)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    last_error = models.CharField(_("last error"), max_length=200, blank=True, default="")
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("message delivery")
        verbose_name_plural = _("message deliveries")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} ({self.status})"

    @property
    def subject_ref(self) -> str:
        return self.subject_key[:12]


class PatientSource(models.Model):
    """Record linkage: one source Patient resource (a hospital's Patient id) of a subject.

    A subject is one resident ID (one ``Patient`` row, named by the first source seen); every hospital's
    Patient id with the same resident ID links here, and the records that reference any of them count for
    the subject. The demographics each source sent are kept: when they differ from the subject's (name,
    sex; the birth date is part of the resident ID), bureau staff see the link in the admin and the
    subject's requests are refused until a coder confirms the link (``confirmed`` holds a digest of the
    demographics confirmed, so a later change opens it again). See ``datadomain.linkage``."""

    resource_id = models.CharField(_("FHIR resource id"), max_length=64, primary_key=True)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="sources", verbose_name=_("patient"))
    name = models.CharField(_("name"), max_length=200)
    birth_date = models.DateField(_("birth date"))
    sex = models.CharField(_("sex"), max_length=8, choices=Patient.Sex.choices, default=Patient.Sex.UNKNOWN)
    version_id = models.BigIntegerField(_("resource version"), default=0)
    last_updated = models.DateTimeField(_("last updated at source"))
    ingest_batch = models.BigIntegerField(_("ingest batch"), default=0)
    confirmed = models.CharField(_("confirmed demographics"), max_length=64, blank=True, db_default="")
    confirmed_by = models.CharField(_("confirmed by"), max_length=150, blank=True, db_default="")
    confirmed_at = models.DateTimeField(_("confirmed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("linked source patient")
        verbose_name_plural = _("linked source patients")

    def __str__(self) -> str:
        return str(self.resource_id)
