from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from datadomain.synthetic import generate


class Command(BaseCommand):
    help = "Write deterministic synthetic FHIR R4 bulk NDJSON (Patient, Condition, Encounter, Observation) to DIR."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--patients", type=int, required=True)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--bad-lines", type=float, default=0.0, help="fraction of malformed lines (0-1)")
        parser.add_argument("--gzip", action="store_true", help="write .ndjson.gz files")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["patients"] < 0 or not 0 <= options["bad_lines"] <= 1:
            raise CommandError("--patients must be >= 0 and --bad-lines between 0 and 1", returncode=2)
        counts = generate(
            patients=options["patients"],
            seed=options["seed"],
            out=options["out"],
            bad_lines=options["bad_lines"],
            gz=options["gzip"],
        )
        total = sum(counts.values())
        details = ", ".join(f"{kind} {count}" for kind, count in counts.items())
        self.stdout.write(f"wrote {total} resources to {options['out']}: {details}")
