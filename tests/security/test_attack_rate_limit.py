"""Attack: beating the rate limits with concurrency.

The limits count a person's requests and then insert one more. Without a lock, submissions that arrive
together all count the same number and all pass: on PostgreSQL 12 parallel POSTs about one person
completed 10 requests under a limit of 3. Each test here fires at least 12 submissions at once, through
threads that each hold their own database connection (single POSTs through the service, batches) or as
real HTTP requests to a real gunicorn, and asserts that at most the limit were let through.

The thread tests run on PostgreSQL (DATABASE_URL) and on the embedded SQLite file, whose single writer
lock serialises submissions (a submission waits for it rather than failing). The real-server test needs
PostgreSQL: on the embedded default, gunicorn would also run the pipeline inside each request, and the
pipeline's own writers contend for SQLite's one lock, which has nothing to do with admission.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections

from datadomain import custodian
from insurer_portal.services import api_key_create
from tenants.models import Insurer
from tests import fhir
from tests.factories import InsurerFactory
from tests.gunicorn import gunicorn_server
from tests.underwriting.conftest import (  # noqa: F401 - fixtures shared with the underwriting tests
    approved_manuals,
    author,
    ingest,
    insurer,
    request_body,
    reviewer,
)
from underwriting.models import RequestStatus, UnderwritingRequest
from underwriting.services.requests import (
    Applicant,
    ConsentEvidence,
    SubmitItem,
    SubmitOutcome,
    requests_submit_many,
    submit_item,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("approved_manuals")]

PARALLEL = 16
PERSON = {"resident_id": fhir.resident_id(date(1962, 6, 6), sequence=517), "name": "周晓梅"}


@pytest.fixture
def person(ingest: Callable[[list[dict[str, Any]]], None]) -> dict[str, str]:  # noqa: F811
    ingest([fhir.patient("pat-race", PERSON["resident_id"], PERSON["name"], date(1962, 6, 6))])
    return PERSON


@pytest.fixture
def limits(settings: Any, held: list[str]) -> None:
    """Limits of 3 per (insurer, subject) and 5 per subject; admitted requests wait in their stage."""
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 3
    settings.UNDERWRITING_SUBJECT_LIMIT_COUNT = 5


def item(applicant: dict[str, str], reference: str) -> SubmitItem:
    body = request_body(applicant, reference=reference)
    consent = body["consent"]
    evidence = ConsentEvidence(
        f"C-{reference}", _moment(consent["signed_at"]), None, consent["scope"], consent["artifact_sha256"]
    )
    return submit_item(
        reference=reference, applicant=Applicant(**applicant), manual_slug="charlson-acci", consent=evidence, sent=body
    )


def _moment(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


def all_at_once(calls: list[Callable[[], list[SubmitOutcome]]]) -> list[SubmitOutcome]:
    """Run the calls in threads released together; each thread uses (and closes) its own connection."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], list[SubmitOutcome]]) -> list[SubmitOutcome]:
        try:
            start.wait(timeout=30)
            return call()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        results = list(pool.map(run, calls))
    return [outcome for outcomes in results for outcome in outcomes]


def admitted(insurer: Insurer | None = None) -> int:  # noqa: F811
    requests = UnderwritingRequest.objects.exclude(status=RequestStatus.REJECTED, reason="rate_limited")
    return requests.filter(insurer=insurer).count() if insurer else requests.count()


def test_parallel_submissions_about_one_person_pass_the_limit_at_most_three_times(
    insurer: Insurer,  # noqa: F811
    person: dict[str, str],
    limits: None,
) -> None:
    def one(index: int) -> Callable[[], list[SubmitOutcome]]:
        return lambda: requests_submit_many(
            insurer_id=insurer.pk, insurer_slug=insurer.slug, items=[item(person, f"RACE-{index}")]
        )

    outcomes = all_at_once([one(index) for index in range(PARALLEL)])
    assert all(outcome.error is None for outcome in outcomes)
    assert UnderwritingRequest.objects.count() == PARALLEL
    assert admitted() == 3, [(o.request.status, o.request.reason) for o in outcomes if o.request]
    assert UnderwritingRequest.objects.filter(status=RequestStatus.EXTRACTING).count() == 3


def test_parallel_batches_about_one_person_pass_the_limit_at_most_three_times(
    insurer: Insurer,  # noqa: F811
    person: dict[str, str],
    limits: None,
) -> None:
    """Batches go through the same admission: four batches of four items about one person, at once."""

    def batch(index: int) -> Callable[[], list[SubmitOutcome]]:
        items = [item(person, f"BATCH-{index}-{n}") for n in range(4)]
        return lambda: requests_submit_many(insurer_id=insurer.pk, insurer_slug=insurer.slug, items=items)

    outcomes = all_at_once([batch(index) for index in range(4)])
    assert len(outcomes) == 16
    assert admitted() == 3


def test_parallel_submissions_from_several_insurers_pass_the_subject_limit_at_most_five_times(
    person: dict[str, str], limits: None
) -> None:
    """The per-subject limit across insurers (5 here) holds under concurrency too: four insurers send four
    requests each about one person, all at once; each insurer alone may pass 3."""
    companies = [InsurerFactory(slug=f"race-{index}") for index in range(4)]

    def one(company: Insurer, index: int) -> Callable[[], list[SubmitOutcome]]:
        return lambda: requests_submit_many(
            insurer_id=company.pk, insurer_slug=company.slug, items=[item(person, f"S-{company.pk}-{index}")]
        )

    outcomes = all_at_once([one(company, index) for company in companies for index in range(4)])
    assert len(outcomes) == 16
    assert admitted() == 5
    assert all(admitted(company) <= 3 for company in companies)


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs PostgreSQL: on SQLite gunicorn runs the whole pipeline in each request under one writer lock",
)
def test_parallel_posts_to_a_real_server_pass_the_limit_at_most_three_times(
    insurer: Insurer,  # noqa: F811
    person: dict[str, str],
    tmp_path: Path,
) -> None:
    """The report's attack as it was made: 12 POSTs at once over HTTP to gunicorn (two processes with six
    threads each), limit 3. Without REDIS_URL the server runs the pipeline in the request, so there is a
    custodian key to score with."""
    custodian.keypair_create(bits=2048)
    _, key = api_key_create(insurer=insurer)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    env = {"UNDERWRITING_RATE_LIMIT_COUNT": "3", "API_THROTTLE_RATE": "10000/min"}
    with gunicorn_server(tmp_path, extra_env=env, workers=2, threads=6) as server:
        start = threading.Barrier(12)

        def post(index: int) -> tuple[int, dict[str, Any]]:
            body = request_body(person, reference=f"HTTP-{index}")
            body["consent"]["reference"] = f"C-HTTP-{index}"
            start.wait(timeout=30)
            return server.request("POST", "/api/v1/underwriting-requests", headers=headers,
                                  body=json.dumps(body).encode(), timeout=60)  # fmt: skip

        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(post, range(12)))
    assert [status for status, _ in answers] == [202] * 12, server.log_tail()
    reasons = sorted(answer["reason"] or "" for _, answer in answers)
    assert reasons == [""] * 3 + ["rate_limited"] * 9, reasons
    assert admitted() == 3
