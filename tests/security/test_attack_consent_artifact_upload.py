"""Attacks on the API's consent-form upload (POST /api/v1/consent-artifacts), and the form mode it serves.

An insurer (or whoever holds its key, or nobody) sends what is not a signed form: a web page or a script
named .pdf and declared application/pdf, a file with a path in its name, two files at once, an empty file,
one over the size limit, broken base64, a declared type that contradicts the content, no key at all. Each
answers 400 (or 401) with field errors and stores nothing. A real form is stored by its SHA-256 alone
(never under a name the client chose), answers alike when sent again, and then proves consent for a
request in ``form`` mode, where a SHA-256 without the form is refused."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from audit.models import AuditEntry
from tenants.models import Insurer
from tests.residents.conftest import alice  # noqa: F401 - fixtures
from tests.underwriting.conftest import (  # noqa: F401 - fixtures
    approved_manuals,
    author,
    client_for,
    insurer,
    request_body,
    reviewer,
)
from underwriting.models import ConsentMode, ConsentPolicy, UnderwritingRequest

pytestmark = [pytest.mark.django_db]
URL = "/api/v1/consent-artifacts"
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


@pytest.fixture(autouse=True)
def store(settings: Any, tmp_path: Path) -> Path:
    settings.CONSENT_STORE_DIR = tmp_path / "consent-store"
    settings.CONSENT_ARTIFACT_MAX_BYTES = 4096
    return Path(settings.CONSENT_STORE_DIR)


def stored_files(store: Path) -> list[Path]:
    return [p for p in store.rglob("*") if p.is_file()] if store.exists() else []


def upload(api: APIClient, content: bytes, name: str = "form.pdf", content_type: str = "application/pdf") -> Any:
    return api.post(URL, {"file": SimpleUploadedFile(name, content, content_type=content_type)}, format="multipart")


@pytest.mark.parametrize(
    ("content", "name", "content_type"),
    [
        (b"<html><script>alert(1)</script></html>", "form.pdf", "application/pdf"),
        (b"#!/bin/sh\nrm -rf /\n", "form.pdf", "application/pdf"),
        (b"MZ\x90\x00" + b"\x00" * 60, "form.png", "image/png"),
        (b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", "form.png", "image/png"),
        (b" %PDF-1.7 (not at the start)", "form.pdf", "application/pdf"),
        (b"", "form.pdf", "application/pdf"),
        (PDF + b"x" * 5000, "form.pdf", "application/pdf"),  # over the limit
        (PNG, "form.pdf", "application/pdf"),  # declared type contradicts the content
    ],
)
def test_what_is_not_an_accepted_form_is_refused_with_a_field_error_and_not_stored(
    insurer: Insurer,  # noqa: F811
    store: Path,
    content: bytes,
    name: str,
    content_type: str,
) -> None:
    response = upload(client_for(insurer), content, name, content_type)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert list(error["fields"]) == ["file"]
    for echoed in ("script", "rm -rf", "onload"):  # nothing of the content comes back
        assert echoed not in str(error)
    assert stored_files(store) == []


def test_two_files_broken_base64_a_lying_json_type_and_no_key_store_nothing(
    insurer: Insurer,  # noqa: F811
    store: Path,
) -> None:
    api = client_for(insurer)
    two = api.post(
        URL,
        {"file": [SimpleUploadedFile("a.pdf", PDF), SimpleUploadedFile("b.pdf", PDF + b" ")]},
        format="multipart",
    )
    assert (two.status_code, list(two.json()["error"]["fields"])) == (400, ["file"])
    broken = api.post(URL, {"content_base64": "JVBERi0x%%%"}, format="json")
    assert (broken.status_code, list(broken.json()["error"]["fields"])) == (400, ["content_base64"])
    lying = api.post(
        URL, {"content_base64": base64.b64encode(PNG).decode(), "content_type": "application/pdf"}, format="json"
    )
    assert (lying.status_code, list(lying.json()["error"]["fields"])) == (400, ["file"])
    other = api.post(
        URL, {"content_base64": base64.b64encode(PDF).decode(), "content_type": "text/html"}, format="json"
    )
    assert (other.status_code, list(other.json()["error"]["fields"])) == (400, ["content_type"])
    anonymous = APIClient().post(URL, {"file": SimpleUploadedFile("form.pdf", PDF)}, format="multipart")
    assert anonymous.status_code == 401
    form = api.post(URL, "file=x", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415
    assert stored_files(store) == []


def test_a_name_with_a_path_never_chooses_where_the_form_goes(insurer: Insurer, store: Path) -> None:  # noqa: F811
    response = upload(client_for(insurer), PDF, name="../../../../tmp/evil.pdf")
    assert response.status_code == 201
    digest = hashlib.sha256(PDF).hexdigest()
    assert stored_files(store) == [store / digest[:2] / digest]
    assert not Path("/tmp/evil.pdf").exists()


def test_a_form_uploaded_as_multipart_or_base64_proves_consent_in_form_mode(
    insurer: Insurer,  # noqa: F811
    alice: dict[str, str],  # noqa: F811
    approved_manuals: Any,  # noqa: F811
    store: Path,
    held: list[str],
) -> None:
    ConsentPolicy.objects.create(insurer=insurer, mode=ConsentMode.FORM, confirmation_hours=72)
    api = client_for(insurer)
    digest = hashlib.sha256(PDF).hexdigest()

    # Without the form, its SHA-256 alone proves nothing.
    refused = api.post(
        "/api/v1/underwriting-requests", request_body(alice, reference="F-0", artifact_sha256=digest), format="json"
    )
    assert (refused.json()["status"], refused.json()["reason"]) == ("rejected", "not_verified")

    first = upload(api, PDF)
    assert first.status_code == 201
    assert first.json() == {"sha256": digest, "size": len(PDF), "content_type": "application/pdf"}
    again = api.post(URL, {"content_base64": base64.b64encode(PDF).decode()}, format="json")
    assert (again.status_code, again.json()) == (201, first.json())
    for content, kind in ((PNG, "image/png"), (JPEG, "image/jpeg")):
        assert upload(api, content, "scan.bin", "application/octet-stream").json()["content_type"] == kind
    assert AuditEntry.objects.filter(action="consent.artifact_stored", target_id=digest).count() == 2

    accepted = api.post(
        "/api/v1/underwriting-requests",
        request_body(alice, reference="F-1", artifact_sha256=digest),
        format="json",
    )
    assert accepted.status_code == 202
    assert UnderwritingRequest.objects.get(pk=accepted.json()["id"]).status == "extracting"


def test_a_flood_of_uploads_is_stopped_per_key_and_per_insurer(
    insurer: Insurer,  # noqa: F811
    store: Path,
    settings: Any,
) -> None:
    from django.core.cache import cache

    cache.clear()
    settings.API_CONSENT_ARTIFACT_THROTTLE_RATE = "3/min"
    settings.API_INSURER_CONSENT_ARTIFACT_THROTTLE_RATE = "5/day"
    api = client_for(insurer)
    answers = [upload(api, PDF + str(n).encode()).status_code for n in range(5)]
    assert answers == [201, 201, 201, 429, 429]
    refused = upload(api, PDF + b"again")
    assert int(refused["Retry-After"]) > 0
    # A second key of the same insurer gets the rest of the insurer's budget, then nothing.
    second = client_for(insurer)
    assert [upload(second, PDF + b"k2-" + str(n).encode()).status_code for n in range(3)] == [201, 201, 429]
    assert len(stored_files(store)) == 5
    cache.clear()
