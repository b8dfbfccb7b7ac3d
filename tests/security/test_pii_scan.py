"""A scanner for personal and clinical data over everything an insurer or an operator sees: API responses,
webhook bodies, portal pages, error pages and every log line written meanwhile (all loggers, DEBUG).

The flow runs the product in-process (tasks eager): submissions that complete, every rejection reason,
malformed input that looks like a resident ID, another insurer's and unknown objects, a CSRF failure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from config.celery import app as celery_app
from datadomain import custodian
from tenants.models import Insurer, InsurerUser
from tests import fhir
from tests.portal.conftest import _portal_settings, member, signed_in  # noqa: F401
from tests.underwriting.conftest import (  # noqa: F401
    approved_manuals,
    author,
    client_for,
    ingest,
    insurer,
    other_insurer,
    request_body,
    reviewer,
)
from tests.webhook_receiver import Receiver
from underwriting.services.webhooks import webhook_endpoint_create

pytestmark = pytest.mark.django_db
URL = "/api/v1/underwriting-requests"
DIAGNOSES = ["I50.0", "E11.200x001", "I21.9", "C34.1", "N18.5"]


@pytest.fixture
def people(ingest: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, str]]:  # noqa: F811
    resources: list[dict[str, Any]] = []
    people = []
    for index, (name, code) in enumerate(zip(["赵一鸣", "钱二丽", "孙三强", "李四海"], DIAGNOSES, strict=False)):
        resident_id = fhir.resident_id(date(1960 + index, 5, 17), sequence=200 + index)
        resources += [fhir.patient(f"p{index}", resident_id, name, date(1960 + index, 5, 17))]
        resources += [fhir.condition(f"p{index}", code), fhir.condition(f"p{index}", DIAGNOSES[-1])]
        people.append({"resident_id": resident_id, "name": name})
    ingest(resources)
    return people


def test_no_personal_or_clinical_data_reaches_insurers_errors_or_logs(
    people: list[dict[str, str]],
    approved_manuals: Any,  # noqa: F811
    insurer: Insurer,  # noqa: F811
    other_insurer: Insurer,  # noqa: F811
    receiver: Receiver,
    log_lines: list[str],
    django_capture_on_commit_callbacks: Callable[..., Any],
    settings: Any,
) -> None:
    settings.UNDERWRITING_RATE_LIMIT_COUNT = 1
    custodian.keypair_create(bits=2048)
    webhook_endpoint_create(insurer_id=insurer.pk, url=receiver.url)
    api: APIClient = client_for(insurer)
    seen: list[bytes] = []
    assert celery_app.conf.task_always_eager

    with django_capture_on_commit_callbacks(execute=True):
        ids = []
        for index, person in enumerate(people):
            response = api.post(URL, request_body(person, reference=f"PII-{index}"), format="json")
            seen.append(response.content)
            ids.append(response.json()["id"])
        # Every way to be refused, and input that looks like (or is) personal data in the wrong place.
        alice = people[0]
        for body in [
            request_body({**alice, "name": "不是本人"}, reference="MISMATCH"),
            request_body(people[1], reference="AGAIN"),  # rate limited
            request_body({"resident_id": alice["resident_id"][:-1] + "0", "name": alice["name"]}, reference="BADSUM"),
            request_body({"resident_id": alice["resident_id"] + "9", "name": alice["name"]}, reference="LONG"),
            request_body(people[2], scope=["marketing"], reference="SCOPE"),
            request_body(people[3], manual="unknown-manual", reference="MANUAL"),
            {"reference": alice["resident_id"], "applicant": alice},
        ]:
            seen.append(api.post(URL, body, format="json").content)
    for request_id in ids:
        seen.append(api.get(f"{URL}/{request_id}").content)
    seen.append(api.get(URL, {"page_size": 100}).content)
    seen.append(api.get(URL, {"reference": alice["resident_id"]}).content)
    seen.append(client_for(other_insurer).get(f"{URL}/{ids[0]}").content)
    seen += [delivery.body for delivery in receiver.received]
    assert len(receiver.received) >= len(people)

    # Portal pages and error pages, as the insurer's underwriter and as another insurer's.
    client = signed_in(member(insurer, "pii-underwriter").user)
    outsider = signed_in(member(other_insurer, "pii-outsider", InsurerUser.Role.UNDERWRITER).user)
    for path in ["/portal/", "/portal/requests/", f"/portal/requests/{ids[0]}/", "/portal/batches/"]:
        response = client.get(path)
        assert response.status_code == 200, path
        seen.append(response.content)
    # A search echoes the user's own query back (search box, language switch's return URL); the results
    # themselves must not add the ID or the name.
    for query in (alice["resident_id"], alice["name"]):
        page = client.get("/portal/requests/", {"q": query}).content.decode()
        assert page.count(query) <= _echoes(page, query), query
    seen.append(outsider.get(f"/portal/requests/{ids[0]}/").content)
    seen.append(Client().get(f"/no-such-page/{alice['resident_id']}").content)
    seen.append(Client(enforce_csrf_checks=True).post("/portal/login/", {"username": alice["resident_id"]}).content)

    text = "\n".join(part.decode(errors="replace") for part in seen) + "\n" + "\n".join(log_lines)
    assert len(log_lines) > 20, "the flow should have logged"
    for person in people:
        assert person["resident_id"] not in text
        assert person["name"] not in text
    assert alice["resident_id"][:-1] + "0" not in text
    for code in DIAGNOSES:
        assert not re.search(rf"(?<![\w.]){re.escape(code)}(?![\w.])", text), code
    for line in log_lines:
        json.loads(line)  # every log line is one JSON object


def _echoes(page: str, query: str) -> int:
    """How often the page repeats the query inside form values and links (not in any result)."""
    from urllib.parse import quote

    encoded = {query, quote(query), quote(query, safe="")}
    tags = re.findall(r"<(?:input|option|a|link|form)\b[^>]*>", page)
    return sum(tag.count(form) for tag in tags for form in encoded if form == query)
