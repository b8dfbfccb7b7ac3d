from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, no_translations

from audit import services
from audit.anchors import AnchorError


class Command(BaseCommand):
    help = (
        "Sign the audit chain head (position, hash, time) into a new file in AUDIT_ANCHOR_DIR, never "
        "overwriting one; keep these files where the database's administrators cannot write."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", type=Path, default=None, help="directory (default AUDIT_ANCHOR_DIR)")

    @no_translations
    def handle(self, *args: Any, **options: Any) -> None:
        try:
            path = services.audit_anchor_export(out_dir=options["out"])
        except AnchorError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(str(path))
