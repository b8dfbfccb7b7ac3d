from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser, no_translations

from audit import services


class Command(BaseCommand):
    help = (
        "Verify the audit hash chain, read-only: every link, every anchor in AUDIT_ANCHOR_DIR (and --anchor), "
        "and that no entry stays unchained past AUDIT_CHAIN_GRACE_SECONDS. Exits 0 when all holds; otherwise "
        "non-zero, naming the first problem."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--anchor",
            type=Path,
            action="append",
            default=[],
            help="an anchor file, or a directory of them (a copy kept elsewhere), to check as well",
        )

    @no_translations
    def handle(self, *args: Any, **options: Any) -> None:
        report = services.audit_chain_verify(anchor_paths=options["anchor"])
        if not report.intact:
            raise CommandError(f"Audit chain verification failed. {report.problem}")
        latest = report.latest_anchor
        anchored = (
            f", latest at position {latest.chain_seq} ({latest.exported_at:%Y-%m-%d %H:%M:%S %Z})" if latest else ""
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Audit chain intact: {report.checked} entries, head {report.head_hash[:16]}; "
                f"{report.pending} pending (within {settings.AUDIT_CHAIN_GRACE_SECONDS:g} s); "
                f"{report.anchors} anchors checked{anchored}."
            )
        )
