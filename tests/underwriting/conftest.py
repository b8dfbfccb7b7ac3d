from __future__ import annotations

from collections.abc import Callable
from datetime import date
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from insurer_portal.services import api_key_create
from tenants.models import Insurer
from tests import fhir
from tests.factories import InsurerFactory, UserFactory
from underwriting.models import RatingManual
from underwriting.reference import builtin_manual_paths
from underwriting.services.manuals import manual_approve, manual_upload

ALICE_BIRTH = date(1950, 3, 14)
ALICE_ID = fhir.resident_id(ALICE_BIRTH, sequence=124)
ALICE_NAME = "王丽华"


@pytest.fixture
def author(db: None) -> AbstractBaseUser:
    return UserFactory(username="model-author", is_staff=True)


@pytest.fixture
def reviewer(db: None) -> AbstractBaseUser:
    return UserFactory(username="model-reviewer", is_staff=True)


@pytest.fixture
def approved_manuals(author: AbstractBaseUser, reviewer: AbstractBaseUser) -> list[RatingManual]:
    manuals = []
    for path in builtin_manual_paths():
        manual = manual_upload(text=path.read_text(encoding="utf-8"), uploaded_by=author)
        manuals.append(manual_approve(slug=manual.slug, version=manual.version, approved_by=reviewer))
    return manuals


@pytest.fixture
def insurer(db: None) -> Insurer:
    return InsurerFactory(slug="ping-life", name="Ping Life")


@pytest.fixture
def other_insurer(db: None) -> Insurer:
    return InsurerFactory(slug="other-life", name="Other Life")


def client_for(insurer: Insurer) -> APIClient:
    client = APIClient()
    _, plaintext = api_key_create(insurer=insurer)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


@pytest.fixture
def api(insurer: Insurer) -> APIClient:
    return client_for(insurer)


@pytest.fixture
def other_api(other_insurer: Insurer) -> APIClient:
    return client_for(other_insurer)


@pytest.fixture
def ingest(tmp_path: Path) -> Callable[[list[dict[str, Any]]], None]:
    def run(resources: list[dict[str, Any]]) -> None:
        path = fhir.write_ndjson(tmp_path / f"batch-{len(list(tmp_path.iterdir()))}.ndjson", resources)
        call_command("ingest_fhir", str(path), stdout=StringIO(), stderr=StringIO())

    return run


@pytest.fixture
def alice(db: None, ingest: Callable[[list[dict[str, Any]]], None]) -> dict[str, str]:
    """A 76-year-old with heart failure and complicated diabetes (charlson-acci: 3 + 1 + 2 = 6, tier D)."""
    ingest(
        [
            fhir.patient("pat-alice", ALICE_ID, ALICE_NAME, ALICE_BIRTH),
            fhir.condition("pat-alice", "I50.0"),
            fhir.condition("pat-alice", "E11.200x001"),
            fhir.condition("pat-alice", "C34.1", verification="refuted"),
        ]
    )
    return {"resident_id": ALICE_ID, "name": ALICE_NAME}


def request_body(
    applicant: dict[str, str], *, reference: str = "APP-1", manual: str = "charlson-acci", **consent: Any
) -> dict[str, Any]:
    evidence = {
        "reference": "CONSENT-1",
        "signed_at": "2026-01-01T09:00:00+08:00",
        "scope": ["underwriting"],
        "artifact_sha256": "a" * 64,
    }
    evidence.update(consent)
    return {"reference": reference, "applicant": applicant, "manual": manual, "consent": evidence}


def statements(captured: Any) -> int:
    """How many statements a block ran, counting a bulk INSERT that SQLite made Django split into several
    batches once (SQLite takes at most 999 parameters a statement: the driver's limit, not a query per
    item). Only a multi-row INSERT continued by another into the same table is merged, and only on SQLite,
    so a loop of single-row inserts still counts once per row; on PostgreSQL this is ``len(captured)``."""
    count, previous = 0, ""
    for query in captured.captured_queries:
        sql = query["sql"]
        head = sql.split(" VALUES", 1)[0] if sql.startswith("INSERT INTO") else ""
        count += not (connection.vendor == "sqlite" and head and head == previous)
        previous = head if "), (" in sql else ""
    return count
