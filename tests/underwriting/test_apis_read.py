"""Reading one request through the API: the answer's manual version comes with the row, in one query."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.underwriting.conftest import request_body
from underwriting.models import RatingManual
from underwriting.selectors import request_for_api
from underwriting.serializers import RequestOutputSerializer

URL = "/api/v1/underwriting-requests"
pytestmark = pytest.mark.django_db


def test_a_request_and_its_manual_version_are_read_in_one_query(
    api: APIClient,
    insurer: Any,
    alice: dict[str, str],
    approved_manuals: list[RatingManual],
    django_assert_num_queries: Any,
) -> None:
    created = api.post(URL, request_body(alice), format="json").json()
    with django_assert_num_queries(1):
        found = request_for_api(insurer_id=insurer.pk, request_id=created["id"])
        answer = RequestOutputSerializer(found).data
    assert answer == created
    assert answer["manual"] == {"slug": "charlson-acci", "version": 1}
    assert api.get(f"{URL}/{created['id']}").json() == created
    assert api.get(f"{URL}/{created['id']}?wait=0.1").json() == created


def test_another_insurers_request_is_not_found(insurer: Any, alice: dict[str, str], api: APIClient) -> None:
    created = api.post(URL, request_body(alice), format="json").json()
    assert request_for_api(insurer_id=insurer.pk + 1000, request_id=created["id"]) is None
    assert request_for_api(insurer_id=insurer.pk, request_id="not-a-uuid") is None
