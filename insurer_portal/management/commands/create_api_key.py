from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from insurer_portal.services import InsurerError, api_key_create
from tenants.models import Insurer


class Command(BaseCommand):
    help = "Create an API key for an insurer. The key is printed once, alone on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the insurer's slug")
        parser.add_argument("--name", default="", help="a label for the key, e.g. 'core system'")

    def handle(self, *args: Any, **options: Any) -> None:
        insurer = Insurer.objects.filter(slug=options["slug"]).first()
        if insurer is None:
            raise CommandError(f"No insurer with slug '{options['slug']}'.")
        try:
            key, plaintext = api_key_create(insurer=insurer, name=options["name"])
        except InsurerError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Created API key {key.prefix} for {insurer.slug}. Store it now: it is not shown again.")
        self.stdout.write(plaintext)
