"""What the end-to-end, fault and worker tests share: a populated domain and waiting on real processes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any, TypeVar

from django.core.management import call_command

from datadomain import custodian
from datadomain.synthetic import generate
from tenants.models import Insurer
from tests.factories import InsurerFactory, UserFactory
from tests.underwriting.conftest import client_for
from underwriting.reference import builtin_manual_paths
from underwriting.services.manuals import manual_approve, manual_upload

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 60.0, interval: float = 0.1, what: str = "condition") -> T:
    """``predicate()``'s first truthy value; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s")


def make_population(folder: Path, *, patients: int, seed: int, insurer_slug: str) -> dict[str, Any]:
    """A 2048-bit key pair, the built-in manuals approved (four-eyes), synthetic residents ingested, an
    insurer and its API client. ``people`` lists each resident's ID and name as the insurer would send them."""
    custodian.keypair_create(bits=2048)
    author, reviewer = UserFactory(username="author", is_staff=True), UserFactory(username="reviewer", is_staff=True)
    for path in builtin_manual_paths():
        manual = manual_upload(text=path.read_text(), uploaded_by=author)
        manual_approve(slug=manual.slug, version=manual.version, approved_by=reviewer)
    generate(patients=patients, seed=seed, out=folder / "fhir")
    call_command("ingest_fhir", str(folder / "fhir"), stdout=StringIO(), stderr=StringIO())
    people = []
    for line in (folder / "fhir" / "Patient.ndjson").read_text().splitlines():
        patient = json.loads(line)
        people.append({"resident_id": patient["identifier"][0]["value"], "name": patient["name"][0]["text"]})
    insurer: Insurer = InsurerFactory(slug=insurer_slug)
    return {"insurer": insurer, "api": client_for(insurer), "people": people}
