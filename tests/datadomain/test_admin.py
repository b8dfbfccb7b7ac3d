from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import orjson
import pytest
from django.test import Client
from django.urls import reverse

from datadomain.models import Condition, Patient, QuarantinedLine
from tests.datadomain.fhir import condition, patient, resident_id
from tests.factories import UserFactory
from tests.staff import otp_login

pytestmark = pytest.mark.django_db
BORN = date(1960, 5, 5)
RID = resident_id(BORN)


@pytest.fixture
def staff(client: Client) -> Client:
    return otp_login(client, UserFactory(is_staff=True, is_superuser=True))


def test_patient_pages_show_the_masked_id_never_the_raw_one_or_the_name(
    staff: Client, load: Callable[..., None]
) -> None:
    load(patient("p1", BORN, rid=RID, name="欧阳小明"))
    listing = staff.get(reverse("admin:datadomain_patient_changelist")).content.decode()
    detail = staff.get(reverse("admin:datadomain_patient_change", args=[Patient.objects.get().pk])).content.decode()
    for page in (listing, detail):
        assert RID not in page
        assert "欧阳小明" not in page
    assert "370214********" in listing


def test_admin_action_reprocesses_a_fixed_line(
    staff: Client, load: Callable[..., None], in_process_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    """The admin sends the lines to the data domain's queue (ingest writes raw records under the domain's
    role); with tasks in process the line ingests at once."""
    load(patient("p1", BORN, rid=RID), {"resourceType": "Condition", "id": "c1"})
    line = QuarantinedLine.objects.get()
    assert line.reason_code == "missing_subject"
    QuarantinedLine.objects.filter(pk=line.pk).update(raw_line=orjson.dumps(condition("c1", "p1", "C78.0")).decode())
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(
            reverse("admin:datadomain_quarantinedline_changelist"),
            {"action": "reprocess", "_selected_action": [line.pk]},
            follow=True,
        )
    assert response.status_code == 200
    assert Condition.objects.get().code == "C780"
    line.refresh_from_db()
    assert line.resolved_at is not None
