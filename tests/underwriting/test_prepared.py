"""Reads whose SQL is built once per process (underwriting.selectors.prepared_rows): the same rows as the
ORM's query, for every value of the arguments, and the ORM's query where the SQL cannot be reused."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from tenants.models import Insurer
from underwriting import selectors
from underwriting.models import ConsentPolicy, RatingManual, RequestStatus, UnderwritingRequest
from underwriting.services import requests

pytestmark = pytest.mark.django_db


def both(key: str, build: Any, *args: Any) -> tuple[list[Any], list[Any]]:
    return selectors.prepared_rows(key, build, *args), list(build(*args))


def test_rows_and_parameters_are_the_orms_for_each_value(insurer: Insurer, other_insurer: Insurer) -> None:
    ConsentPolicy.objects.create(insurer=insurer, mode="form", confirmation_hours=12)
    for insurer_id in (insurer.pk, other_insurer.pk, insurer.pk):
        prepared, orm = both("test:policy", requests._consent_policy_query, insurer_id)
        assert prepared == orm
    assert selectors.prepared_rows("test:policy", requests._consent_policy_query, insurer.pk) == [("form", 12)]
    assert selectors.prepared_rows("test:policy", requests._consent_policy_query, other_insurer.pk) == []


def test_model_rows_are_built_with_their_deferred_fields(
    insurer: Insurer, approved_manuals: list[RatingManual]
) -> None:
    prepared, orm = both("test:manual", selectors._one_manual_query, "charlson-acci", insurer.slug)
    assert [(m.pk, m.slug, m.version, m.status) for m in prepared] == [(m.pk, m.slug, m.version, m.status) for m in orm]
    assert prepared
    assert prepared[0].get_deferred_fields() == orm[0].get_deferred_fields()
    assert selectors.prepared_rows("test:manual", selectors._one_manual_query, "no-such-manual", insurer.slug) == []


def test_counts_with_parameters_in_another_order_than_the_arguments(insurer: Insurer, other_insurer: Insurer) -> None:
    now = datetime.now(UTC)
    for owner in (insurer, insurer, other_insurer):
        UnderwritingRequest.objects.create(
            insurer=owner, reference="P-1", subject_key="e" * 64, resident_id_masked="110101********001X",
            manual_slug="charlson-acci", as_of=date(2026, 11, 23), status=RequestStatus.COMPLETED,
        )  # fmt: skip
    since = (now - timedelta(days=365), now - timedelta(days=30), now - timedelta(days=7))
    for insurer_id in (insurer.pk, other_insurer.pk):
        prepared, orm = both("test:limits", requests._limit_counts_query, *since, insurer_id, "e" * 64)
        assert prepared == orm
    prepared = selectors.prepared_rows("test:limits", requests._limit_counts_query, *since, insurer.pk, "e" * 64)
    assert prepared == [("e" * 64, 3, 3, 2)]


def test_a_builder_that_computes_with_its_argument_falls_back_to_the_orm(insurer: Insurer) -> None:
    def computed(insurer_id: int) -> Any:
        return Insurer.objects.filter(pk=insurer_id + 0 if insurer_id > 0 else 0).values_list("slug")

    assert selectors.prepared_rows("test:computed", computed, insurer.pk) == [(insurer.slug,)]
    if connection.vendor == "postgresql":
        # The probe is negative: the branch gave a constant, which is not the probe, so nothing is reused.
        assert selectors._statements["test:computed"] is None
