from __future__ import annotations

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils.translation import gettext_lazy as _

from datadomain.models.identity import Patient


class ResourceIdField(models.CharField):  # type: ignore[type-arg]
    """A FHIR resource id ([A-Za-z0-9-.]{1,64}): compared for equality only, so on PostgreSQL it gets no
    second ``varchar_pattern_ops`` index for LIKE queries (Django adds one for every indexed varchar,
    keyed on a type name starting with ``varchar``). One index fewer per record table is a fifth less
    index maintenance per ingested row."""

    def db_type(self, connection: BaseDatabaseWrapper) -> str | None:
        if connection.vendor == "postgresql":
            return f"character varying({self.max_length})"
        return super().db_type(connection)


class Record(models.Model):
    """Fields shared by every clinical record: its FHIR id and version, and the patient row.

    Newer versions replace older ones (``version_id`` first, then ``last_updated``).
    """

    # The FHIR id is the primary key: upserts conflict on it, and no surrogate id needs an index.
    resource_id = ResourceIdField(_("FHIR resource id"), max_length=64, primary_key=True)
    # No single-column index: every table has a composite index starting with patient_id. No database
    # foreign key either: ingest resolves patient ids in the same transaction that writes the rows, and a
    # per-row RI trigger would cost a third of the bulk-load time (see benchmarks/RESULTS.md).
    patient = models.ForeignKey(
        Patient, on_delete=models.CASCADE, verbose_name=_("patient"), db_index=False, db_constraint=False
    )
    version_id = models.BigIntegerField(_("resource version"), default=0)
    last_updated = models.DateTimeField(_("last updated at source"))
    # The ingest batch that last wrote this row (see IngestBatch and datadomain.freshness).
    ingest_batch = models.BigIntegerField(_("ingest batch"), default=0)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return str(self.resource_id)


class Condition(Record):
    """A diagnosis, its codes normalised (upper case, no dot; e.g. ``E11200X001``)."""

    code_system = models.CharField(_("code system"), max_length=8)  # "icd10", "icd10cm" or "icd10cn"
    # Every ICD-10-family code of the Condition, normalised, space-separated (``I10 I509``).
    code = models.CharField(_("code"), max_length=120)
    verification_status = models.CharField(_("verification status"), max_length=20, blank=True)
    clinical_status = models.CharField(_("clinical status"), max_length=20, blank=True)
    onset_date = models.DateField(_("onset or recorded date"), null=True, blank=True)
    # A Condition without an ICD-10-family coding: its local code (or diagnosis text) and source, mapped
    # at extraction through the source's mapping table (datadomain.mapping); ``code`` is then empty.
    local_source = models.CharField(_("local source"), max_length=200, blank=True, db_default="")
    local_code = models.CharField(_("local code or text"), max_length=200, blank=True, db_default="")

    class Meta(Record.Meta):
        verbose_name = _("condition")
        verbose_name_plural = _("conditions")
        indexes = [
            models.Index(fields=["patient", "code"], name="dd_condition_patient_code"),
            models.Index(fields=["local_source", "local_code"], condition=models.Q(code=""), name="dd_condition_local"),
        ]


class Encounter(Record):
    class_code = models.CharField(_("class"), max_length=16)  # v3 ActCode: IMP, EMER, AMB, ...
    status = models.CharField(_("status"), max_length=20)
    period_start = models.DateField(_("start"))
    period_end = models.DateField(_("end"), null=True, blank=True)

    class Meta(Record.Meta):
        verbose_name = _("encounter")
        verbose_name_plural = _("encounters")
        indexes = [models.Index(fields=["patient", "period_start"], name="dd_encounter_patient_start")]


class Observation(Record):
    """A LOINC-coded measurement. ``value`` holds the primary quantity in the catalog's unit
    (HbA1c in %, BMI in kg/m2, systolic pressure in mmHg for the 85354-9 panel) and
    ``value_secondary`` the diastolic pressure of a blood-pressure panel."""

    code = models.CharField(_("LOINC code"), max_length=16)
    status = models.CharField(_("status"), max_length=20)
    effective_date = models.DateField(_("effective date"))
    value = models.FloatField(_("value"))
    value_secondary = models.FloatField(_("secondary value"), null=True, blank=True)
    unit = models.CharField(_("unit"), max_length=16, blank=True)

    class Meta(Record.Meta):
        verbose_name = _("observation")
        verbose_name_plural = _("observations")
        indexes = [models.Index(fields=["patient", "code", "effective_date"], name="dd_obs_patient_code_date")]
