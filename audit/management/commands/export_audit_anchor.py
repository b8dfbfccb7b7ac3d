from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit import services


class Command(BaseCommand):
    help = "Write the audit chain head (position, hash, time) to a file: keep it where the database cannot reach."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", type=Path, default=None, help="directory (default AUDIT_ANCHOR_DIR)")

    def handle(self, *args: Any, **options: Any) -> None:
        path = services.audit_anchor_export(out_dir=options["out"])
        self.stdout.write(str(path))
