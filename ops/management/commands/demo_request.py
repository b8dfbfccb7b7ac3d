from __future__ import annotations

import hashlib
import json
import shlex
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from datadomain.selectors import subject_is_known
from datadomain.services import subject_key_for
from underwriting.models import UnderwritingRequest


class Command(BaseCommand):
    help = (
        "Development only (DEBUG on): print a ready-to-run curl request for a demo applicant who has no "
        "request yet, with a fresh reference and the SHA-256 of a consent form written under var/."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")
        parser.add_argument("--manual", default="charlson-acci")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("Only with DEBUG on: it prints a demo resident's ID and name.")
        var = Path(settings.VAR_DIR)
        key_file, patients = var / "demo-api-key.txt", var / "demo-fhir" / "Patient.ndjson"
        if not key_file.exists() or not patients.exists():
            raise CommandError("No demo data yet: run `make run` (or `make seed`) first.")
        resident_id, name = _fresh_applicant(patients)
        reference = f"DEMO-{uuid.uuid4().hex[:8].upper()}"
        form = var / "demo-consent" / f"{reference}.txt"
        form.parent.mkdir(exist_ok=True)
        signed_at = timezone.localtime() - timedelta(minutes=5)
        form.write_text(
            f"Consent to medical underwriting\nApplicant: {name}\nReference: C-{reference}\n"
            f"Signed: {signed_at.isoformat(timespec='seconds')}\n",
            encoding="utf-8",
        )
        body = {
            "reference": reference,
            "manual": options["manual"],
            "applicant": {"resident_id": resident_id, "name": name},
            "consent": {
                "reference": f"C-{reference}",
                "signed_at": signed_at.isoformat(timespec="seconds"),
                "scope": ["underwriting"],
                "artifact_sha256": hashlib.sha256(form.read_bytes()).hexdigest(),
            },
        }
        base = f"http://{options['host']}:{options['port']}/api/v1/underwriting-requests"
        self.stdout.write(f"# consent form: {form} (artifact_sha256 is `sha256sum` of this file)")
        self.stdout.write(f"KEY=$(cat {shlex.quote(str(key_file))})")
        self.stdout.write(
            f'ID=$(curl -s -X POST {base} -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" '
            f'-H "Idempotency-Key: {reference}" -d {shlex.quote(json.dumps(body, ensure_ascii=False))} '
            "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"id\"])')"
        )
        self.stdout.write(f'curl -s "{base}/$ID?wait=5" -H "Authorization: Bearer $KEY"; echo')


def _fresh_applicant(patients: Path) -> tuple[str, str]:
    """The first demo resident the domain knows who has no request yet (so no limit is in the way)."""
    used = set(UnderwritingRequest.objects.values_list("subject_key", flat=True))
    with patients.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                patient = json.loads(line)
                resident_id, name = patient["identifier"][0]["value"], patient["name"][0]["text"]
            except (ValueError, KeyError, IndexError, TypeError):
                continue
            key = subject_key_for(resident_id)
            if key not in used and subject_is_known(key):
                return resident_id, name
    raise CommandError("Every demo resident already has a request; generate more with `seed_demo --patients N`.")
