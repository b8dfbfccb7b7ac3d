"""The ingest writer takes its column lists and COPY text forms from the models: a column added to a
record model that the parsed rows do not fill is an error at import, never a silently empty column."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models
from django.test.utils import isolate_apps

from datadomain.ingest import writer
from datadomain.ingest.parse import ConditionRow, PatientRow
from datadomain.models import Condition, Encounter, Observation, Patient, PatientSource
from datadomain.models.records import Record

TABLES = [
    (writer.PATIENT, Patient, ()),
    (writer.CONDITION, Condition, ()),
    (writer.ENCOUNTER, Encounter, ()),
    (writer.OBSERVATION, Observation, ()),
    (writer.SOURCE, PatientSource, ("confirmed", "confirmed_by", "confirmed_at")),
]


@pytest.mark.parametrize(("table", "model", "not_written"), TABLES)
def test_every_column_of_each_model_is_written_by_ingest_or_declared_not_to_be(
    table: writer.Table, model: type[models.Model], not_written: tuple[str, ...]
) -> None:
    stored = {field.column for field in model._meta.concrete_fields if not isinstance(field, models.AutoField)}
    assert set(table.columns) | set(writer.WRITER_OWNED) | set(not_written) == stored
    assert table.name == model._meta.db_table


def test_a_new_model_column_the_writer_does_not_know_is_an_error() -> None:
    with isolate_apps("datadomain"):

        class ConditionWithSeverity(Record):
            code_system = models.CharField(max_length=8)
            code = models.CharField(max_length=120)
            verification_status = models.CharField(max_length=20)
            clinical_status = models.CharField(max_length=20)
            onset_date = models.DateField(null=True)
            local_source = models.CharField(max_length=200)
            local_code = models.CharField(max_length=200)
            severity = models.CharField(max_length=20)  # new: no parsed row field fills it

            class Meta:
                app_label = "datadomain"

        staged = {"onset_age": models.DurationField(null=True)}
        with pytest.raises(ImproperlyConfigured, match="does not fill: severity"):
            writer.table_for(ConditionWithSeverity, ConditionRow._fields, staged_only=staged)
        # Declared as not written by ingest (a column filled elsewhere), it is accepted.
        table = writer.table_for(
            ConditionWithSeverity, ConditionRow._fields, staged_only=staged, not_written=("severity",)
        )
        assert "severity" not in table.columns


def test_a_parsed_field_that_is_no_column_or_has_no_copy_form_is_an_error() -> None:
    with pytest.raises(ImproperlyConfigured, match="phone is neither a column"):
        writer.table_for(Patient, PatientRow._fields)
    with pytest.raises(ImproperlyConfigured, match="no COPY text form for JSONField"):
        writer.table_for(Patient, PatientRow._fields, staged_only={"phone": models.JSONField()})


def test_copy_text_escapes_free_text_and_writes_nulls() -> None:
    row = ConditionRow(
        "c1", "p1", 3, datetime(2026, 1, 2, 3, 4, tzinfo=UTC), "icd10", "I509", "confirmed", "act\tive",
        None, "text:urn:his\\b", "心力\n衰竭", "52 years",
    )  # fmt: skip
    text = writer.copy_text(writer.CONDITION, [row], [17])
    assert text == (
        "c1\tp1\t3\t2026-01-02T03:04:00+00:00\ticd10\tI509\tconfirmed\tact\\tive\t\\N\ttext:urn:his\\\\b"
        "\t心力\\n衰竭\t52 years\t17\n"
    )
    fields = text.rstrip("\n").split("\t")
    assert len(fields) == len(writer.CONDITION.fields) + 1  # and the line number


@pytest.mark.django_db
def test_the_staging_table_takes_the_copy_text_of_each_row_type() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("COPY staging is the PostgreSQL path")
    row = PatientRow(
        "p1", "11010519491231002X", "王\\小明", date(1949, 12, 31), "female", "k" * 64, "110105********002X", 1,
        datetime(2026, 1, 1, tzinfo=UTC), "+8613800000000",
    )  # fmt: skip
    table = writer.PATIENT
    definition = ", ".join(f"{name} {kind}" for name, kind in zip(table.fields, table.pg_types(), strict=True))
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE writer_probe ({definition}, line_number bigint)")
        cursor.cursor.copy_expert("COPY writer_probe FROM STDIN", io.StringIO(writer.copy_text(table, [row], [5])))
        cursor.execute("SELECT name, birth_date, phone, line_number FROM writer_probe")
        assert cursor.fetchone() == ("王\\小明", date(1949, 12, 31), "+8613800000000", 5)
