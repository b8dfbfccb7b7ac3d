from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
import time_machine

from datadomain.selectors import subject_features
from tenants.models import Insurer
from tests import fhir
from underwriting.models import RatingManual, RequestStatus, UnderwritingRequest
from underwriting.services.requests import Applicant, ConsentEvidence, request_date, request_submit, submit_item
from underwriting.services.state import transition

pytestmark = pytest.mark.django_db


def consent() -> ConsentEvidence:
    return ConsentEvidence("C-1", datetime(2026, 1, 1, tzinfo=UTC), None, ["underwriting"], "b" * 64)


def test_request_date_is_the_shanghai_calendar_day() -> None:
    # 16:30 UTC on 23 November is 00:30 on 24 November in Asia/Shanghai.
    assert request_date(datetime(2026, 11, 23, 16, 30, tzinfo=UTC)) == date(2026, 11, 24)
    assert request_date(datetime(2026, 11, 23, 15, 59, tzinfo=UTC)) == date(2026, 11, 23)


def test_age_points_use_the_age_on_the_request_date(
    insurer: Insurer, approved_manuals: list[RatingManual], ingest: Callable[[list[dict[str, Any]]], None]
) -> None:
    birth = date(1956, 11, 24)  # turns 70 (3 age points instead of 2) on 24 November 2026
    rid = fhir.resident_id(birth, sequence=321)
    ingest([fhir.patient("pat-bday", rid, "周敏", birth)])
    with time_machine.travel(datetime(2026, 11, 23, 16, 30, tzinfo=UTC), tick=False):
        item = submit_item(
            reference="R", applicant=Applicant(rid, "周敏"), manual_slug="charlson-acci", consent=consent()
        )
        request, created = request_submit(insurer_id=insurer.pk, insurer_slug=insurer.slug, item=item)
    assert created
    assert request.as_of == date(2026, 11, 24)
    features = subject_features(subject_key=request.subject_key, feature_names=["age.acci_points"], as_of=request.as_of)
    assert features == {"age.acci_points": 3}


def test_transitions_are_guarded_and_recorded(insurer: Insurer) -> None:
    request = UnderwritingRequest.objects.create(
        insurer=insurer, reference="R", subject_key="s" * 64, resident_id_masked="x", manual_slug="m",
        as_of=date(2026, 11, 23), status=RequestStatus.SCORING,
    )  # fmt: skip
    assert transition(request.pk, from_status=RequestStatus.SCORING, to_status=RequestStatus.TIERING)
    # A second worker doing the same step finds the request moved on: no error, no change.
    assert not transition(request.pk, from_status=RequestStatus.SCORING, to_status=RequestStatus.TIERING)
    assert [(e.from_status, e.to_status) for e in request.events.all()] == [("scoring", "tiering")]
    with pytest.raises(ValueError, match="not part of the lifecycle"):
        transition(request.pk, from_status=RequestStatus.TIERING, to_status=RequestStatus.EXTRACTING)
