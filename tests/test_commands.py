from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from tenants.models import Insurer

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent(settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEMO_ADMIN_PASSWORD = "a-demo-password-1"
    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())
    assert get_user_model().objects.filter(is_superuser=True).count() == 1
    # The demo insurer, and one that asks residents to confirm consent themselves.
    assert sorted(Insurer.objects.values_list("slug", flat=True)) == ["demo-health", "demo-life"]


def test_seed_demo_refuses_without_a_password(settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEMO_ADMIN_PASSWORD = ""
    with pytest.raises(CommandError, match="DEMO_ADMIN_PASSWORD"):
        call_command("seed_demo", stdout=StringIO())


def test_create_insurer() -> None:
    out = StringIO()
    call_command("create_insurer", "ping-life", "--name", "Ping Life", stdout=out)
    assert Insurer.objects.get(slug="ping-life").name == "Ping Life"
    assert "ping-life" in out.getvalue()


def test_create_insurer_rejects_duplicates_and_bad_slugs() -> None:
    call_command("create_insurer", "ping-life", "--name", "Ping Life", stdout=StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_insurer", "ping-life", "--name", "Again", stdout=StringIO())
    with pytest.raises(CommandError, match="slug"):
        call_command("create_insurer", "Bad Slug!", "--name", "Bad", stdout=StringIO())


@pytest.mark.django_db(transaction=True)  # the pipeline's stages start on commit
def test_demo_request_prints_a_request_that_completes_for_a_fresh_applicant(settings, in_process_tasks) -> None:  # type: ignore[no-untyped-def]
    import hashlib
    import json
    import shlex
    from pathlib import Path

    from rest_framework.test import APIClient

    settings.DEMO_ADMIN_PASSWORD = "a-demo-password-1"
    seeded = StringIO()
    call_command("seed_demo", "--patients", "40", "--base-url", "http://127.0.0.1:8123", stdout=seeded)
    assert "Resident page: http://127.0.0.1:8123/residents/" in seeded.getvalue()  # make run PORT=8123
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("demo_request", stdout=StringIO())
    settings.DEBUG = True
    out = StringIO()
    call_command("demo_request", "--port", "8123", stdout=out)
    lines = out.getvalue().splitlines()
    post = shlex.split(next(line for line in lines if line.startswith("ID=$(curl")))
    body = json.loads(post[post.index("-d") + 1])
    assert "http://127.0.0.1:8123/api/v1/underwriting-requests" in post
    form = Path(lines[0].split("consent form: ")[1].split(" (")[0])
    assert body["consent"]["artifact_sha256"] == hashlib.sha256(form.read_bytes()).hexdigest()
    settings.DEBUG = False

    key = (Path(settings.VAR_DIR) / "demo-api-key.txt").read_text().strip()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    created = api.post("/api/v1/underwriting-requests", body, format="json")
    assert created.status_code == 202, created.content
    done = api.get(f"/api/v1/underwriting-requests/{created.json()['id']}?wait=5").json()
    assert done["status"] == "completed", done
    assert done["result"]["tier"] in {"A", "B", "C", "D"}
    settings.DEBUG = True
    again = StringIO()
    call_command("demo_request", stdout=again)  # the applicant just used is not offered again
    assert body["applicant"]["resident_id"] not in again.getvalue()
