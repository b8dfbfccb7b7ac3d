"""Set-based submission: outcomes, timelines, audit, consent, grants and webhooks, and queries per chunk."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEntry
from datadomain.models import ComparisonGrant, Consent, CustodianKey
from tenants.models import Insurer
from tests import fhir
from tests.factories import UserFactory
from tests.underwriting.conftest import ALICE_ID, ALICE_NAME, statements
from underwriting.errors import UnderwritingError
from underwriting.models import (
    RateLimitOverride,
    RatingManual,
    UnderwritingRequest,
    VerificationFailure,
    WebhookDelivery,
)
from underwriting.services import requests as submission
from underwriting.services.requests import (
    Applicant,
    ConsentEvidence,
    SubmitItem,
    SubmitOutcome,
    request_submit,
    requests_submit_many,
    submit_item,
)
from underwriting.services.webhooks import webhook_endpoint_create

pytestmark = pytest.mark.django_db
SIGNED = datetime(2026, 1, 1, tzinfo=UTC)


def item(
    resident_id: str = ALICE_ID,
    name: str = ALICE_NAME,
    *,
    reference: str = "R",
    manual: str = "charlson-acci",
    consent_ref: str = "C-1",
    scope: tuple[str, ...] = ("underwriting",),
    sha: str = "b" * 64,
    key: str = "",
    body: str = "",
) -> SubmitItem:
    consent = ConsentEvidence(consent_ref, SIGNED, None, list(scope), sha)
    return submit_item(
        reference=reference, applicant=Applicant(resident_id, name), manual_slug=manual, consent=consent,
        idempotency_key=key, sent={"body": body or reference},
    )  # fmt: skip


def submit(insurer: Insurer, items: list[SubmitItem]) -> list[SubmitOutcome]:
    return requests_submit_many(insurer_id=insurer.pk, insurer_slug=insurer.slug, items=items)


def status_of(outcome: SubmitOutcome) -> tuple[str, str]:
    assert outcome.request is not None, outcome.error
    return outcome.request.status, outcome.request.reason


@pytest.fixture
def active_key(db: None) -> CustodianKey:
    return CustodianKey.objects.create(key_id="k" * 16, public_key_json="{}")


@pytest.fixture
def people(ingest: Callable[[list[dict[str, Any]]], None]) -> list[tuple[str, str]]:
    """120 residents the domain knows, as (resident ID, name)."""
    found = [(fhir.resident_id(date(1960, 1, 1) + timedelta(days=i), sequence=200 + i), f"居民{i}") for i in range(120)]
    ingest(
        [
            fhir.patient(f"pat-{i}", rid, name, date(1960, 1, 1) + timedelta(days=i))
            for i, (rid, name) in enumerate(found)
        ]
    )
    return found


def test_outcomes_and_reasons_follow_the_checks_in_order(
    insurer: Insurer,
    alice: dict[str, str],
    approved_manuals: list[RatingManual],
    active_key: CustodianKey,
    settings: Any,
) -> None:
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 10  # every request past the manual check counts
    stranger = fhir.resident_id(date(1980, 1, 1), sequence=555)
    outcomes = submit(
        insurer,
        [
            item(reference="ok"),
            item(reference="no-manual", manual="no-such-manual", name="李四"),  # the manual is checked first
            item(stranger, "赵六", reference="unknown"),
            item(name="李四", reference="mismatch"),
            item(reference="scope", consent_ref="C-2", scope=("marketing",)),
            item(reference="evidence", sha="c" * 64),  # C-1 again, other evidence: immutable
            item("110105194912310021", reference="bad-id"),
        ],
    )
    assert [status_of(o) for o in outcomes[:5]] == [
        ("extracting", ""),
        ("rejected", "manual_not_approved"),
        ("rejected", "not_verified"),  # unknown ID, wrong name and invalid consent: one answer
        ("rejected", "not_verified"),
        ("rejected", "not_verified"),
    ]
    assert all(o.created for o in outcomes[:5])
    reused, bad_id = outcomes[5].error, outcomes[6].error
    assert reused is not None  # the insurer's own input, refused like an invalid field: no request
    assert (reused.code, list(reused.fields)) == ("invalid_input", ["consent.reference"])
    assert bad_id is not None
    assert (bad_id.code, bad_id.fields) == (
        "invalid_input",
        {"applicant.resident_id": ["Not a valid ID."]},
    )
    assert UnderwritingRequest.objects.count() == 5
    saved = {r.reference: r for r in UnderwritingRequest.objects.select_related("manual")}
    assert saved["ok"].manual is not None
    assert saved["ok"].consent_id is not None
    assert saved["scope"].consent_id is not None  # rejected on validity, after recording the evidence
    assert saved["unknown"].consent_id is not None  # recorded whoever the person is
    assert saved["unknown"].completed_at is not None
    assert saved["ok"].completed_at is None
    failures = {f.request.reference: (f.identity, f.consent) for f in VerificationFailure.objects.select_related()}
    assert failures == {
        "unknown": ("unknown", "valid"),
        "mismatch": ("mismatch", "valid"),
        "scope": ("matched", "invalid"),
    }


def test_timeline_and_audit_are_those_of_single_transitions(
    insurer: Insurer, alice: dict[str, str], approved_manuals: list[RatingManual], active_key: CustodianKey
) -> None:
    ok, rejected = submit(insurer, [item(reference="ok"), item(name="李四", reference="bad")])
    assert ok.request is not None
    assert rejected.request is not None
    assert [(e.from_status, e.to_status) for e in ok.request.events.all()] == [
        ("", "received"), ("received", "verifying"), ("verifying", "extracting"),
    ]  # fmt: skip
    assert [(e.from_status, e.to_status, e.reason) for e in rejected.request.events.all()][-1] == (
        "verifying", "rejected", "not_verified",
    )  # fmt: skip
    entries = AuditEntry.objects.filter(target_id=str(ok.request.pk)).order_by("id")
    assert [(e.action, e.actor, e.detail) for e in entries] == [
        ("request.received", f"insurer:{insurer.pk}",
         {"insurer_id": insurer.pk, "manual": "charlson-acci", "subject": ok.request.subject_key[:12]}),
        ("request.transition", "", {"from": "received", "to": "verifying", "reason": ""}),
        ("request.transition", "", {"from": "verifying", "to": "extracting", "reason": ""}),
    ]  # fmt: skip
    last = AuditEntry.objects.filter(target_id=str(rejected.request.pk)).order_by("id").last()
    assert last is not None
    # The audit trail, for bureau staff, says which check failed.
    assert last.detail == {
        "from": "verifying", "to": "rejected", "reason": "not_verified", "identity": "mismatch", "consent": "valid",
    }  # fmt: skip
    consent = AuditEntry.objects.get(action="consent.record")  # one record, shared by both requests
    assert consent.detail == {"subject": ok.request.subject_key[:12], "scope": ["underwriting"]}
    assert ALICE_ID not in str(list(AuditEntry.objects.values_list("detail", flat=True)))


def test_submission_issues_no_grant(
    insurer: Insurer, people: list[tuple[str, str]], approved_manuals: list[RatingManual], active_key: CustodianKey
) -> None:
    """The data domain issues a request's grant when it extracts its features (with the MAC key that binds
    it to the subject's score), never the web process that takes the request."""
    outcomes = submit(insurer, [item(*people[0]), item(*people[1], manual="elixhauser-vw"), item(people[2][0], "x")])
    assert [o.request.status for o in outcomes[:2] if o.request] == ["extracting", "extracting"]
    assert not ComparisonGrant.objects.exists()


def test_consent_is_recorded_once_per_reference_and_stays_immutable(
    insurer: Insurer, people: list[tuple[str, str]], approved_manuals: list[RatingManual], settings: Any
) -> None:
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 10
    first = submit(insurer, [item(*people[0], reference="a"), item(*people[0], reference="b")])
    assert Consent.objects.count() == 1
    assert first[0].request.consent_id == first[1].request.consent_id  # type: ignore[union-attr]
    again = submit(insurer, [item(*people[0], reference="c"), item(*people[0], reference="d", sha="d" * 64)])
    assert status_of(again[0]) == ("extracting", "")
    assert again[1].error is not None
    assert list(again[1].error.fields) == ["consent.reference"]
    assert Consent.objects.count() == 1
    assert AuditEntry.objects.filter(action="consent.record").count() == 1


def test_requests_in_one_batch_count_against_the_rate_limit(
    insurer: Insurer, people: list[tuple[str, str]], approved_manuals: list[RatingManual], settings: Any
) -> None:
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 2
    submit(insurer, [item(*people[0], reference="earlier")])
    outcomes = submit(insurer, [item(*people[0], reference=f"r{i}") for i in range(3)] + [item(*people[1])])
    assert [status_of(o) for o in outcomes] == [
        ("extracting", ""), ("rejected", "rate_limited"), ("rejected", "rate_limited"), ("extracting", ""),
    ]  # fmt: skip


def test_an_override_lets_one_request_of_a_batch_past_the_limit(
    insurer: Insurer, people: list[tuple[str, str]], approved_manuals: list[RatingManual], settings: Any
) -> None:
    from underwriting.services.overrides import override_grant

    staff = UserFactory(username="privacy-officer", is_staff=True)
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 1
    first = submit(insurer, [item(*people[0], reference="first")])[0]
    assert first.request is not None
    override_grant(
        insurer_id=insurer.pk, subject_key=first.request.subject_key, reason="appeal", granted_by=staff,
        expires_at=timezone.now() + timedelta(days=1),
    )  # fmt: skip
    outcomes = submit(insurer, [item(*people[0], reference=f"r{i}") for i in range(2)])
    assert [status_of(o) for o in outcomes] == [("extracting", ""), ("rejected", "rate_limited")]
    assert RateLimitOverride.objects.get().used == 1
    assert AuditEntry.objects.get(action="rate_limit_override.use").detail["request"] == str(outcomes[0].request.pk)  # type: ignore[union-attr]


def test_idempotency_keys_replay_within_and_across_batches(
    insurer: Insurer, people: list[tuple[str, str]], approved_manuals: list[RatingManual]
) -> None:
    first = submit(
        insurer,
        [
            item(*people[0], key="k1", body="x"),
            item(*people[0], key="k1", body="x"),
            item(*people[0], key="k1", body="y"),
        ],
    )
    assert first[0].created
    assert first[0].request is not None
    assert (first[1].request, first[1].created) == (first[0].request, False)
    assert first[2].error is not None
    assert first[2].error.code == "idempotency_conflict"
    again = submit(insurer, [item(*people[0], key="k1", body="x"), item(*people[0], key="k1", body="z")])
    assert again[0].request is not None
    assert (again[0].request.pk, again[0].created) == (first[0].request.pk, False)
    assert again[1].error is not None
    assert again[1].error.code == "idempotency_conflict"
    assert UnderwritingRequest.objects.count() == 1


def test_a_lost_idempotency_race_replays_the_winner(
    insurer: Insurer, people: list[tuple[str, str]], approved_manuals: list[RatingManual], monkeypatch: Any
) -> None:
    winner, _ = request_submit(
        insurer_id=insurer.pk, insurer_slug=insurer.slug, item=item(*people[0], key="k1", body="x")
    )
    lookup = submission._requests_by_idempotency_key
    calls: list[int] = []

    def committed_after_our_lookup(insurer_id: int, items: Any) -> dict[str, UnderwritingRequest]:
        calls.append(1)
        return {} if len(calls) == 1 else lookup(insurer_id, items)

    monkeypatch.setattr(submission, "_requests_by_idempotency_key", committed_after_our_lookup)
    outcomes = submit(insurer, [item(*people[1], reference="other"), item(*people[0], key="k1", body="x")])
    assert len(calls) == 2  # the chunk ran again after the unique constraint refused the key
    assert outcomes[1].request is not None
    assert (outcomes[1].request.pk, outcomes[1].created) == (winner.pk, False)
    assert outcomes[0].created
    assert UnderwritingRequest.objects.count() == 2


def test_request_submit_raises_the_items_error(
    insurer: Insurer, alice: dict[str, str], approved_manuals: list[RatingManual]
) -> None:
    with pytest.raises(UnderwritingError) as refused:
        request_submit(insurer_id=insurer.pk, insurer_slug=insurer.slug, item=item("110105194912310021", "x"))
    assert refused.value.code == "invalid_input"
    assert "110105194912310021" not in str(refused.value)


def test_terminal_requests_get_webhooks_and_the_others_one_stage_wake_per_chunk(
    insurer: Insurer, people: list[tuple[str, str]], approved_manuals: list[RatingManual], monkeypatch: Any
) -> None:
    wakes: list[str] = []
    monkeypatch.setattr(submission, "stage_wake_on_commit", wakes.append)
    monkeypatch.setattr(submission, "SUBMIT_CHUNK", 3)
    webhook_endpoint_create(insurer_id=insurer.pk, url="http://127.0.0.1:9/uw")  # an allowed receiver (tests)
    outcomes = submit(
        insurer, [item(*person, reference=str(i)) for i, person in enumerate(people[:5])] + [item(people[5][0], "x")]
    )
    assert wakes == ["extract", "extract"]  # two chunks: 3 + 3 items
    deliveries = WebhookDelivery.objects.all()
    assert [(d.request_id, d.event_type) for d in deliveries] == [(outcomes[5].request.pk, "request.rejected")]  # type: ignore[union-attr]


def test_a_chunk_costs_the_same_queries_whatever_its_size(
    insurer: Insurer,
    people: list[tuple[str, str]],
    approved_manuals: list[RatingManual],
    active_key: CustodianKey,
) -> None:
    webhook_endpoint_create(insurer_id=insurer.pk, url="http://127.0.0.1:9/uw")  # an allowed receiver (tests)

    def batch(chosen: list[tuple[str, str]], tag: str) -> list[SubmitItem]:
        """Mostly accepted, with identity mismatches and unknown subjects mixed in, like a real batch."""
        mixed = []
        for i, (rid, name) in enumerate(chosen):
            if i % 10 == 3:
                name = "某某"  # rejected: not_verified (name)
            if i % 10 == 7:
                rid = fhir.resident_id(date(1990, 1, 1) + timedelta(days=i), sequence=700)  # not_verified (unknown)
            mixed.append(item(rid, name, reference=f"{tag}{i}", consent_ref=f"C-{tag}{i}", key=f"{tag}{i}"))
        return mixed

    submit(insurer, [item(*people[0], reference="warm", consent_ref="W")])  # manual documents parsed once per process
    counts = []
    for items in (batch(people[1:11], "a"), batch(people[11:111], "b")):
        # The test transaction's savepoint pair, subject locks (insert, select for update), idempotency keys,
        # manuals, rate limit, identities, consents (select, withdrawals, insert, audit), requests, events,
        # verification failures, audit; webhooks after commit. Per chunk, never per item.
        with CaptureQueriesContext(connection) as queries:
            outcomes = submit(insurer, items)
        assert all(o.created for o in outcomes)
        counts.append(statements(queries))
    assert counts[0] == counts[1], counts
    assert counts[0] <= 20, counts
