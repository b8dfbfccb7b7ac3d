from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import services


class Command(BaseCommand):
    help = (
        "Chain pending audit entries, then verify the whole hash chain. Exits 0 when it is intact; otherwise "
        "non-zero, naming the first broken entry. With --anchor, also checks an exported chain head."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--anchor", type=Path, action="append", default=[], help="an exported anchor file")

    def handle(self, *args: Any, **options: Any) -> None:
        report = services.audit_chain_verify()
        if not report.intact:
            raise CommandError(
                f"Audit chain broken at entry {report.broken_seq} (id {report.broken_id}): {report.problem}. "
                f"{report.checked} entries before it are intact."
            )
        for path in options["anchor"]:
            problem = services.anchor_check(services.anchor_read(path))
            if problem:
                raise CommandError(f"Audit chain does not match anchor {path}: {problem}.")
        self.stdout.write(
            self.style.SUCCESS(f"Audit chain intact: {report.checked} entries, head {report.head_hash[:16]}.")
        )
