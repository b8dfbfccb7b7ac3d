from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from insurer_portal.services import InsurerError, insurer_create


class Command(BaseCommand):
    help = "Create an insurer organisation that may submit underwriting requests."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="short identifier, e.g. 'pingan-life'")
        parser.add_argument("--name", required=True, help="display name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            insurer = insurer_create(slug=options["slug"], name=options["name"])
        except InsurerError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Created insurer {insurer.slug} ({insurer.name})."))
