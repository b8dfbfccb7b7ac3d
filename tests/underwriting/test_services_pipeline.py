from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from django.utils import timezone

from config.celery import app as celery_app
from tenants.models import Insurer
from underwriting import tasks
from underwriting.models import RatingManual, RequestStatus, UnderwritingRequest
from underwriting.services.pipeline import requests_sweep

pytestmark = pytest.mark.django_db


def stuck(
    insurer: Insurer, manual: RatingManual, *, status: str, minutes: int = 5, attempts: int = 0
) -> UnderwritingRequest:
    request = UnderwritingRequest.objects.create(
        insurer=insurer, reference="R", subject_key="s" * 64, resident_id_masked="x", manual=manual,
        manual_slug=manual.slug, as_of=date(2026, 11, 23), status=status, attempts=attempts,
    )  # fmt: skip
    UnderwritingRequest.objects.filter(pk=request.pk).update(updated_at=timezone.now() - timedelta(minutes=minutes))
    return request


def test_a_stage_that_keeps_failing_leaves_its_requests_to_the_sweeper(
    insurer: Insurer, approved_manuals: list[RatingManual], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No custodian key exists, so extraction cannot encrypt: every retry of the drain fails the same way.
    # Run the task in-process as a worker would (errors recorded, not raised into the caller).
    request = stuck(insurer, approved_manuals[0], status=RequestStatus.EXTRACTING, minutes=0)
    celery_app.conf.task_eager_propagates = False
    try:
        result = tasks.drain_extraction.apply(throw=False)
    finally:
        celery_app.conf.task_eager_propagates = True
    assert result.failed()
    assert UnderwritingRequest.objects.get(pk=request.pk).status == RequestStatus.EXTRACTING  # nothing half-done
    # The sweeper wakes its stage again while attempts remain, then gives up.
    from underwriting.services import pipeline

    woken: list[str] = []
    monkeypatch.setattr(pipeline, "stage_wake", woken.append)
    settings.UNDERWRITING_MAX_ATTEMPTS = 1
    UnderwritingRequest.objects.filter(pk=request.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    assert requests_sweep() == 1
    assert woken == ["extract"]
    UnderwritingRequest.objects.filter(pk=request.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    assert requests_sweep() == 0
    request.refresh_from_db()
    assert request.status == RequestStatus.FAILED
    assert request.completed_at is not None
    assert [e.to_status for e in request.events.all()] == ["failed"]


def test_sweeper_gives_up_after_the_attempt_limit(
    insurer: Insurer, approved_manuals: list[RatingManual], settings: Any
) -> None:
    settings.UNDERWRITING_MAX_ATTEMPTS = 2
    request = stuck(insurer, approved_manuals[0], status=RequestStatus.SCORING, attempts=2)
    assert requests_sweep() == 0
    request.refresh_from_db()
    assert request.status == RequestStatus.FAILED


def test_sweeper_leaves_fresh_and_terminal_requests_alone(
    insurer: Insurer, approved_manuals: list[RatingManual]
) -> None:
    fresh = stuck(insurer, approved_manuals[0], status=RequestStatus.EXTRACTING, minutes=0)
    done = stuck(insurer, approved_manuals[0], status=RequestStatus.COMPLETED)
    assert requests_sweep() == 0
    assert UnderwritingRequest.objects.get(pk=fresh.pk).attempts == 0
    assert UnderwritingRequest.objects.get(pk=done.pk).status == RequestStatus.COMPLETED


def test_domain_and_underwriting_errors_survive_pickling() -> None:
    import pickle

    from datadomain.errors import DomainError
    from underwriting.errors import UnderwritingError

    domain = pickle.loads(pickle.dumps(DomainError("no_active_key", "No key.")))
    assert (domain.code, domain.message) == ("no_active_key", "No key.")
    error = pickle.loads(pickle.dumps(UnderwritingError("invalid_input", "Bad.", fields={"a": ["b"]})))
    assert (error.code, error.fields) == ("invalid_input", {"a": ["b"]})


def test_an_unreachable_broker_does_not_fail_an_accepted_request(
    insurer: Insurer,
    alice: dict[str, str],
    approved_manuals: list[RatingManual],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from kombu.exceptions import OperationalError

    from tests.underwriting.conftest import ALICE_ID
    from underwriting.services.requests import Applicant, ConsentEvidence, request_submit, submit_item

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.drain_extraction, "apply_async", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        item = submit_item(
            reference="R", applicant=Applicant(ALICE_ID, alice["name"]), manual_slug="charlson-acci",
            consent=ConsentEvidence("C", timezone.now() - timedelta(days=1), None, ["underwriting"], "c" * 64),
        )  # fmt: skip
        request, created = request_submit(insurer_id=insurer.pk, insurer_slug=insurer.slug, item=item)
    assert created
    assert UnderwritingRequest.objects.get(pk=request.pk).status == RequestStatus.EXTRACTING
    assert "broker unavailable, extract stage not sent" in caplog.text
    assert ALICE_ID not in caplog.text


def test_webhook_deliveries_lost_with_the_broker_are_swept(
    insurer: Insurer, approved_manuals: list[RatingManual]
) -> None:
    from underwriting.models import WebhookDelivery
    from underwriting.services.webhooks import webhook_endpoint_create, webhooks_sweep

    endpoint, _ = webhook_endpoint_create(insurer_id=insurer.pk, url="http://127.0.0.1:9/hooks")
    request = stuck(insurer, approved_manuals[0], status=RequestStatus.COMPLETED)
    old = WebhookDelivery.objects.create(endpoint=endpoint, request=request, event_type="request.completed", payload={})
    WebhookDelivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    assert webhooks_sweep() == 1
    assert webhooks_sweep() == 0  # its attempt is now scheduled, not overdue
