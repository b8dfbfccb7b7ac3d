from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from underwriting.errors import UnderwritingError
from underwriting.services.manuals import manual_upload


class Command(BaseCommand):
    help = "Upload a rating manual (YAML) as a new draft version; another person must approve it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--by", required=True, help="username of the author")

    def handle(self, *args: Any, **options: Any) -> None:
        author = get_user_model().objects.filter(username=options["by"]).first()
        if author is None:
            raise CommandError(f"No user '{options['by']}'.")
        try:
            text = options["file"].read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc.strerror}") from exc
        try:
            manual = manual_upload(text=text, uploaded_by=author)
        except UnderwritingError as exc:
            problems = exc.fields.get("document") or [exc.message]
            raise CommandError(f"{options['file']}:\n  " + "\n  ".join(problems)) from exc
        self.stdout.write(self.style.SUCCESS(f"Loaded {manual.slug} v{manual.version} as a draft awaiting approval."))
