from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from underwriting.errors import UnderwritingError
from underwriting.services.manuals import manual_approve


class Command(BaseCommand):
    help = "Approve a draft rating manual version (four-eyes: the approver is not its author)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("version", type=int)
        parser.add_argument("--by", required=True, help="username of the approver")

    def handle(self, *args: Any, **options: Any) -> None:
        approver = get_user_model().objects.filter(username=options["by"]).first()
        if approver is None:
            raise CommandError(f"No user '{options['by']}'.")
        try:
            manual = manual_approve(slug=options["slug"], version=options["version"], approved_by=approver)
        except UnderwritingError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(f"Approved {manual.slug} v{manual.version}."))
