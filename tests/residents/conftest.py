from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone

from datadomain import messaging
from datadomain import services as domain
from datadomain.models import Patient
from datadomain.residents import contact_set
from tenants.models import Insurer
from tests import fhir
from tests.underwriting.conftest import (  # noqa: F401 - shared fixtures
    ALICE_BIRTH,
    ALICE_ID,
    ALICE_NAME,
    approved_manuals,
    author,
    client_for,
    ingest,
    insurer,
    request_body,
    reviewer,
)
from underwriting.models import ConsentMode, ConsentPolicy

ALICE_PHONE = "+8613800000001"


@pytest.fixture(autouse=True)
def _clean_outbox() -> Iterator[None]:
    messaging.outbox.clear()
    cache.clear()
    yield
    messaging.outbox.clear()
    cache.clear()


@pytest.fixture
def resident_mode(insurer: Insurer) -> Insurer:  # noqa: F811
    ConsentPolicy.objects.create(insurer=insurer, mode=ConsentMode.RESIDENT, confirmation_hours=72)
    return insurer


def person(resident_id: str, name: str, birth: date, *, phone: str = "") -> dict[str, str]:
    """A resident in the identity table (written directly: these tests are about consent, not ingest)."""
    patient = Patient.objects.create(
        resource_id=f"pat-{resident_id[-6:]}",
        resident_id=resident_id,
        name=name,
        birth_date=birth,
        subject_key=domain.subject_key_for(resident_id),
        resident_id_masked=domain.mask_resident_id(resident_id),
        last_updated=timezone.now(),
    )
    if phone:
        contact_set(subject_key=patient.subject_key, patient_id=patient.pk, phone=phone)
    return {"resident_id": resident_id, "name": name}


@pytest.fixture
def alice(db: None) -> dict[str, str]:
    return person(ALICE_ID, ALICE_NAME, ALICE_BIRTH)


@pytest.fixture
def alice_with_phone(db: None) -> dict[str, str]:
    return person(ALICE_ID, ALICE_NAME, ALICE_BIRTH, phone=ALICE_PHONE)


BOB_ID = fhir.resident_id(date(1980, 6, 2), sequence=317)
BOB_NAME = "张伟"
BOB_PHONE = "+8613800000002"


@pytest.fixture
def bob_with_phone(db: None) -> dict[str, str]:
    return person(BOB_ID, BOB_NAME, date(1980, 6, 2), phone=BOB_PHONE)


def codes_sent_to(phone: str) -> list[str]:
    """The digits of every sign-in code the locmem backend holds for ``phone``, oldest first."""
    import re

    return [m.group(1) for to, text in messaging.outbox if to == phone for m in [re.search(r"(\d{6})", text)] if m]


Submit = Callable[..., Any]
