from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from ops import demo


class Command(BaseCommand):
    help = (
        "Load demo data for the embedded default: a custodian key pair, synthetic residents, the built-in "
        "manuals (approved), one bureau staff account per role, a demo insurer with a portal user and an API "
        "key, and some completed requests. "
        "Safe to run again: it only adds what is missing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--patients",
            type=int,
            default=demo.DEMO_PATIENTS,
            help=f"synthetic residents (default {demo.DEMO_PATIENTS})",
        )
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="where the server answers, for the addresses printed (make passes HOST and PORT)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEMO_ADMIN_PASSWORD:
            raise CommandError("DEMO_ADMIN_PASSWORD must be set when DEBUG is off.")
        seeded = demo.Seeded(base_url=options["base_url"].rstrip("/"))
        steps = tqdm(total=7, desc="seed_demo", unit="step", disable=options["verbosity"] == 0)
        admin = demo.superuser_ensure(seeded)
        steps.update()
        demo.staff_ensure(seeded)
        steps.update()
        demo.keypair_ensure(seeded)
        steps.update()
        folder = demo.population_ensure(seeded, patients=options["patients"])
        steps.update()
        demo.manuals_ensure(seeded, approver=admin)
        steps.update()
        insurer = demo.insurer_and_users_ensure(seeded)
        steps.update()
        demo.requests_ensure(seeded, insurer, folder)
        steps.update()
        steps.close()
        for line in seeded.lines:
            self.stdout.write(line)
