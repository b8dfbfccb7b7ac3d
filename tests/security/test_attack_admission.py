"""Attacks on the admission of a request: what an insurer can learn about a person before consent is
established, how many guesses the limits allow, and consent that comes back after a withdrawal.

The insurer sees the API's answers (status, reason, the request as GET returns it), webhook payloads
(``request_public_view`` and the event type), the portal's request pages and its batch results. Each test
plays the attack through those and asserts what it learned: an unknown resident ID, a wrong name and a
right name without valid consent must look the same everywhere; refused guesses use up the rate limits;
repeated mismatches raise a misuse flag bureau staff see; a withdrawal stops every consent signed before
it, whatever its reference or form. Before the fix, the same attacks told the three cases apart
(``unrated``, ``identity_mismatch``, ``consent_invalid``), let unlimited guesses through, and scored the
withdrawn form presented again under a new reference.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from audit import roles
from config.celery import app as celery_app
from datadomain import services as domain
from datadomain.models import Consent
from insurer_portal.batches import COLUMNS
from insurer_portal.models import Batch
from insurer_portal.services import portal_user_create
from tenants.models import Insurer, InsurerUser
from tests import fhir
from tests.factories import InsurerFactory, UserFactory
from tests.staff import otp_login
from tests.underwriting.conftest import (  # noqa: F401 - fixtures shared with the underwriting tests
    approved_manuals,
    author,
    client_for,
    ingest,
    insurer,
    request_body,
    reviewer,
)
from underwriting.models import FlagKind, MisuseFlag, RequestStatus, UnderwritingRequest, VerificationFailure
from underwriting.serializers import request_public_view
from underwriting.services.flags import flags_evaluate
from underwriting.services.webhooks import EVENT_FOR_STATUS

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("approved_manuals")]

URL = "/api/v1/underwriting-requests"
PASSWORD = "portal-test-password-1"
MARKETING = ["marketing"]  # consent that does not cover underwriting
LIMITS = ("UNDERWRITING_RATE_LIMIT_COUNT", "UNDERWRITING_SUBJECT_LIMIT_COUNT", "UNDERWRITING_SUBJECT_LIMIT_YEAR")


@pytest.fixture(autouse=True)
def _in_process(settings: Any, tmp_path: Path) -> Iterator[None]:
    """Tasks in this process (a portal batch runs as one); consent forms in a store of the test's own."""
    settings.CONSENT_STORE_DIR = tmp_path / "consent-store"
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    cache.clear()
    yield
    celery_app.conf.task_always_eager = eager
    cache.clear()


@pytest.fixture
def residents(ingest: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, str]]:  # noqa: F811
    """Twelve residents the bureau knows, as (resident ID, name)."""
    births = [date(1960 + i, 2, 1 + i) for i in range(12)]
    people = [{"resident_id": fhir.resident_id(born, sequence=410 + i), "name": f"居民{'甲乙丙丁戊己庚辛壬癸子丑'[i]}"}
              for i, born in enumerate(births)]  # fmt: skip
    ingest([fhir.patient(f"res-{i}", p["resident_id"], p["name"], births[i]) for i, p in enumerate(people)])
    return people


def stranger(number: int) -> dict[str, str]:
    """A well-formed resident ID (valid check character) the bureau has no record of."""
    return {"resident_id": fhir.resident_id(date(1981, 3, 1) + timedelta(days=number), sequence=901), "name": "路人"}


@pytest.fixture
def api(insurer: Insurer) -> APIClient:  # noqa: F811
    return client_for(insurer)


@pytest.fixture
def portal(insurer: Insurer) -> Client:  # noqa: F811
    """The insurer's underwriter, signed in to the portal."""
    member: InsurerUser = portal_user_create(
        insurer=insurer, username="uw-probe", email="uw-probe@example.com", role=InsurerUser.Role.UNDERWRITER,
        password=PASSWORD,
    )  # fmt: skip
    client = Client()
    assert client.post("/portal/login/", {"username": member.user.username, "password": PASSWORD}).status_code == 302
    return client


def no_limits(settings: Any) -> None:
    """Lift the rate limits, to look at what one answer says (the limits have tests of their own below)."""
    for name in LIMITS:
        setattr(settings, name, 1000)


def body_for(applicant: dict[str, str], reference: str, **consent: Any) -> dict[str, Any]:
    """A request body with a consent reference of its own (``C-<reference>``)."""
    body = request_body(applicant, reference=reference, **consent)
    body["consent"]["reference"] = f"C-{reference}"
    return body


def submit(api: APIClient, applicant: dict[str, str], reference: str, **consent: Any) -> dict[str, Any]:
    body = body_for(applicant, reference, **consent)
    response = api.post(URL, body, format="json")
    assert response.status_code == 202, response.content
    return dict(response.json())


# What the insurer chose itself or that differs for any two requests; everything else must be equal.
OWN = {"id", "reference", "applicant", "created_at", "completed_at"}


def seen_by_api(api: APIClient, answer: dict[str, Any]) -> dict[str, Any]:
    fetched = api.get(f"{URL}/{answer['id']}").json()
    assert {k: v for k, v in fetched.items() if k not in OWN} == {k: v for k, v in answer.items() if k not in OWN}
    return {k: v for k, v in answer.items() if k not in OWN}


def seen_by_webhook(request_id: str) -> tuple[str, dict[str, Any]]:
    request = UnderwritingRequest.objects.get(pk=request_id)
    data = request_public_view(request)
    return EVENT_FOR_STATUS[RequestStatus(request.status)], {k: v for k, v in data.items() if k not in OWN}


def seen_in_portal(portal: Client, request_id: str) -> str:
    """The portal's request page, with the request's own id, reference, masked ID and times blanked."""
    request = UnderwritingRequest.objects.get(pk=request_id)
    page = portal.get(f"/portal/requests/{request_id}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    for own in (str(request.pk), request.reference, request.resident_id_masked):
        page = page.replace(own, "<own>")
    page = re.sub(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}[^\"<]*", "<time>", page)
    return re.sub(r'(nonce|value|content)="[A-Za-z0-9+/=_-]{20,}"', r'\1="<token>"', page)


def seen_in_timeline(request_id: str) -> list[tuple[str, str, str]]:
    events = UnderwritingRequest.objects.get(pk=request_id).events.all()
    return [(event.from_status, event.to_status, event.reason) for event in events]


def test_unknown_id_wrong_name_and_right_name_without_consent_look_the_same_everywhere(
    api: APIClient, portal: Client, residents: list[dict[str, str]], settings: Any
) -> None:
    """The report's probe: consent scoped to marketing, and three applicants. Before the fix the answers
    were ``unrated``, ``identity_mismatch`` and ``consent_invalid``: existence and the name, for free."""
    no_limits(settings)
    known = residents[0]
    probes = {
        "unknown ID": submit(api, stranger(1), "P-1", scope=MARKETING),
        "ID exists, wrong name": submit(api, {**known, "name": "王二小"}, "P-2", scope=MARKETING),
        "right name, consent invalid": submit(api, known, "P-3", scope=MARKETING),
    }
    ids = {case: answer["id"] for case, answer in probes.items()}
    by_api = {case: seen_by_api(api, answer) for case, answer in probes.items()}
    by_webhook = {case: seen_by_webhook(request_id) for case, request_id in ids.items()}
    by_portal = {case: seen_in_portal(portal, request_id) for case, request_id in ids.items()}
    by_timeline = {case: seen_in_timeline(request_id) for case, request_id in ids.items()}
    for seen in (by_api, by_webhook, by_portal, by_timeline):
        assert len({repr(view) for view in seen.values()}) == 1, seen
    assert by_api["unknown ID"]["status"] == "rejected"
    assert by_api["unknown ID"]["reason"] == "not_verified"
    assert "could not both be verified" in by_portal["unknown ID"]  # a neutral reason with a next step
    # Bureau staff still see which check failed.
    failures = {case: VerificationFailure.objects.get(request_id=request_id) for case, request_id in ids.items()}
    assert {case: (f.identity, f.consent) for case, f in failures.items()} == {
        "unknown ID": ("unknown", "invalid"),
        "ID exists, wrong name": ("mismatch", "invalid"),
        "right name, consent invalid": ("matched", "invalid"),
    }


def test_with_valid_consent_an_unknown_id_answers_like_a_wrong_name(
    api: APIClient, residents: list[dict[str, str]], settings: Any
) -> None:
    """No ``unrated`` shortcut: consent alone (which an insurer can claim) does not reveal who exists."""
    no_limits(settings)
    unknown = submit(api, stranger(2), "V-1")
    wrong_name = submit(api, {**residents[1], "name": "王二小"}, "V-2")
    assert seen_by_api(api, unknown) == seen_by_api(api, wrong_name)
    assert seen_by_webhook(unknown["id"]) == seen_by_webhook(wrong_name["id"])
    assert (unknown["status"], unknown["reason"]) == ("rejected", "not_verified")
    assert submit(api, residents[1], "V-3")["status"] == "extracting"  # the right name and consent proceed


def test_a_batch_of_24_name_guesses_picks_out_no_one(
    api: APIClient, residents: list[dict[str, str]], settings: Any
) -> None:
    """The report's batch: eight name guesses for each of three residents, one of them right, consent
    scoped to marketing. Before the fix the three right guesses came back ``consent_invalid`` and the 21
    others ``identity_mismatch``."""
    no_limits(settings)
    names = ["王二小", "李雷", "韩梅梅", "张伟", "刘洋", "陈静", "杨帆"]
    items, right = [], set()
    for person, position in zip(residents[:3], (1, 4, 7), strict=True):
        guesses = [*names[:position], person["name"], *names[position:]]
        for guess in guesses:
            if guess == person["name"]:
                right.add(len(items))
            items.append(body_for({**person, "name": guess}, f"G-{len(items)}", scope=MARKETING))
    assert len(items) == 24
    results = api.post(f"{URL}/batch", {"requests": items}, format="json").json()["results"]
    answers = [{k: v for k, v in result["request"].items() if k not in OWN} for result in results]
    assert all(answer == answers[0] for answer in answers), [a["reason"] for a in answers]
    assert answers[0]["reason"] == "not_verified"
    assert {index for index in range(24) if answers[index] != answers[0]} == set()  # nothing singles out `right`
    assert len(right) == 3


def test_a_portal_batch_of_name_guesses_picks_out_no_one(
    portal: Client,
    residents: list[dict[str, str]],
    settings: Any,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """The same guesses uploaded as a portal batch, with consent that expired: the batch's results page
    and its downloaded results say the same of every row, the right name included."""
    no_limits(settings)
    person = residents[2]
    guesses = ["王二小", "李雷", person["name"], "韩梅梅"]
    table = [list(COLUMNS)] + [
        [f"B-{i}", person["resident_id"], guess, "charlson-acci", f"C-B-{i}", "2026-01-01", "2026-01-02", "e" * 64]
        for i, guess in enumerate(guesses)
    ]
    text = io.StringIO()
    csv.writer(text).writerows(table)
    upload = SimpleUploadedFile("guesses.csv", text.getvalue().encode("utf-8-sig"), content_type="text/csv")
    portal.post("/portal/batches/", {"file": upload})
    batch = Batch.objects.get()
    assert batch.valid_rows == 4
    with django_capture_on_commit_callbacks(execute=True):  # the batch runs in this process
        portal.post(f"/portal/batches/{batch.pk}/start/")
    results = portal.get(f"/portal/batches/{batch.pk}/results.csv").content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(results)))
    assert {(row["status"], row["reason"]) for row in rows} == {("rejected", "not_verified")}
    page = portal.get(f"/portal/batches/{batch.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert page.count("could not both be verified") == 4
    assert person["name"] not in results + page


def test_name_guesses_with_forged_consent_use_up_the_limit(
    api: APIClient, residents: list[dict[str, str]], settings: Any
) -> None:
    """Consent is only a claim the insurer makes. With a consent form of its own making, an insurer that
    guesses names for one resident gets UNDERWRITING_RATE_LIMIT_COUNT guesses, then nothing: before the
    fix refused requests did not count, and the fourth guess, the right name, was scored."""
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 3
    person = residents[3]
    answers = [submit(api, {**person, "name": guess}, f"F-{i}") for i, guess in enumerate(["王二小", "李雷", "韩梅梅"])]
    assert [(a["status"], a["reason"]) for a in answers] == [("rejected", "not_verified")] * 3
    right = submit(api, person, "F-right")
    assert (right["status"], right["reason"]) == ("rejected", "rate_limited")


def test_the_limits_answer_alike_for_unknown_and_known_ids(
    api: APIClient, residents: list[dict[str, str]], settings: Any
) -> None:
    """The per-(insurer, subject) limit and the per-subject limit across insurers count refused requests
    for unknown and known IDs alike, so being rate limited says nothing about who exists. Before the fix
    an unknown ID was never limited and a known one only by answered requests."""
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 3
    settings.UNDERWRITING_SUBJECT_LIMIT_COUNT = 5
    known, unknown = {**residents[4], "name": "王二小"}, stranger(3)
    cases = (("k", known), ("u", unknown))
    sequences = [[submit(api, who, f"L-{tag}-{i}")["reason"] for i in range(5)] for tag, who in cases]
    assert sequences[0] == sequences[1] == ["not_verified"] * 3 + ["rate_limited"] * 2
    # Across insurers: a second insurer asks twice about each, reaching the subject limit of 5 for both.
    other = client_for(InsurerFactory(slug="second-life"))
    across = [[submit(other, who, f"X-{tag}-{i}")["reason"] for i in range(3)] for tag, who in cases]
    assert across[0] == across[1] == ["not_verified", "not_verified", "rate_limited"]


def test_repeated_identity_mismatches_raise_a_flag_that_bureau_staff_see(
    api: APIClient,
    residents: list[dict[str, str]],
    settings: Any,
    insurer: Insurer,  # noqa: F811
) -> None:
    """Name fishing across many residents stays under the per-subject limits; a misuse flag catches it,
    and staff see the precise reasons the insurer does not."""
    settings.FLAG_MISMATCH_COUNT = 6
    settings.FLAG_MISMATCH_WINDOW_HOURS = 24
    fished = [submit(api, {**person, "name": "王二小"}, f"M-{i}") for i, person in enumerate(residents[5:11])]
    assert {answer["reason"] for answer in fished} == {"not_verified"}
    flags_evaluate()
    flagged = MisuseFlag.objects.filter(kind=FlagKind.IDENTITY_MISMATCHES, insurer=insurer)
    assert {(flag.api_key_id is None, flag.count) for flag in flagged} == {(True, 6), (False, 6)}
    auditor = UserFactory(username="auditor-ann", is_staff=True)
    auditor.groups.add(Group.objects.get(name=roles.AUDITOR))
    staff = otp_login(Client(headers={"accept-language": "en"}), auditor)
    flags_page = staff.get("/admin/underwriting/misuseflag/").content.decode()
    assert "many identity mismatches" in flags_page
    request_page = staff.get(f"/admin/underwriting/underwritingrequest/{fished[0]['id']}/change/").content.decode()
    assert "identity=mismatch" in request_page  # the audit trail keeps the precise reason for staff


# --- item 3: a withdrawal stops every consent signed before it -------------------------------------------


def test_a_withdrawn_consent_does_not_come_back_under_a_new_reference(
    api: APIClient, residents: list[dict[str, str]], settings: Any
) -> None:
    """The report's attack: the same signed form (same SHA-256, signed before the withdrawal) under a new
    reference was accepted and scored. Also: the same form claimed to be signed after the withdrawal, and
    another form dated before it. A consent signed after the withdrawal still counts."""
    no_limits(settings)
    person = residents[11]
    now = timezone.now()
    signed, form = (now - timedelta(days=30)).isoformat(), "a1" * 32
    first = submit(api, person, "W-1", signed_at=signed, artifact_sha256=form)
    assert first["status"] == "extracting"
    withdrawn_at = now - timedelta(hours=2)  # the resident's letter, recorded by bureau staff
    domain.consent_withdraw(consent_id=UnderwritingRequest.objects.get(pk=first["id"]).consent_id, at=withdrawn_at)

    after = (now - timedelta(hours=1)).isoformat()
    attempts = {
        "same form, new reference": submit(api, person, "W-2", signed_at=signed, artifact_sha256=form),
        "same form, dated after": submit(api, person, "W-3", signed_at=after, artifact_sha256=form),
        "other form, dated before": submit(
            api, person, "W-4", signed_at=(withdrawn_at - timedelta(minutes=1)).isoformat(), artifact_sha256="b2" * 32
        ),
    }
    for case, answer in attempts.items():
        assert (answer["status"], answer["reason"]) == ("rejected", "not_verified"), case
        assert VerificationFailure.objects.get(request_id=answer["id"]).consent == "withdrawn", case
    # The evidence presented again is recorded as withdrawn, as bureau staff see it in the admin.
    assert not Consent.objects.filter(subject_key=domain.subject_key_for(person["resident_id"]), withdrawn_at=None)
    fresh = submit(api, person, "W-5", signed_at=after, artifact_sha256="c3" * 32)
    assert fresh["status"] == "extracting"  # consent given again after the withdrawal


def test_a_subject_wide_withdrawal_stops_every_insurers_older_consent(
    api: APIClient, residents: list[dict[str, str]], settings: Any
) -> None:
    """The privacy officer's withdrawal for a resident (PIPL Art. 15) covers insurers that had not yet
    presented any consent: a form they signed before it and present later is refused, one signed after
    it is not. Through a batch too (the same path)."""
    no_limits(settings)
    person = residents[10]
    now = timezone.now()
    domain.subject_consents_withdraw(subject_key=domain.subject_key_for(person["resident_id"]), by="pia")
    other = client_for(InsurerFactory(slug="late-life"))
    before = body_for(person, "S-1", signed_at=(now - timedelta(days=3)).isoformat())
    results = other.post(f"{URL}/batch", {"requests": [before]}, format="json").json()["results"]
    assert (results[0]["request"]["status"], results[0]["request"]["reason"]) == ("rejected", "not_verified")
    later = timezone.now() + timedelta(seconds=1)
    fresh = body_for(person, "S-2", signed_at=later.isoformat(), artifact_sha256="d4" * 32)
    while timezone.now() <= later:  # a consent is valid once it is signed
        pass
    assert other.post(URL, fresh, format="json").json()["status"] == "extracting"
