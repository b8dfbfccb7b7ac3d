from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection
from tqdm import tqdm

from datadomain.ingest.runner import Ingester, input_files

BROKEN_FILES = 3  # exit status: the run finished, but a file broke off (see the summary)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # gone since it was listed: the ingest reports it as unreadable
        return 0


class Command(BaseCommand):
    help = (
        "Ingest FHIR R4 bulk NDJSON (Patient, Condition, Encounter, Observation): files, .ndjson.gz, or "
        "directories of them. Idempotent and resumable; bad lines go to the quarantine. Exit status 0 when "
        "the run finished (even with quarantined lines); 3 when it finished but a file was cut short, "
        "damaged or unreadable (the lines before the break are ingested, the break is quarantined: fetch "
        "the file again); 2 on missing input; 1 on a database error (run again to resume)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", help="NDJSON files (.ndjson or .ndjson.gz) or directories")
        parser.add_argument("--batch-size", type=int, default=10_000, help="lines per transaction (10000)")
        parser.add_argument("--restart", action="store_true", help="ignore checkpoints and read every line again")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="parser processes next to the writing process (default: 2 on PostgreSQL, 0 elsewhere)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            files = input_files(options["paths"])
        except FileNotFoundError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        if not files:
            raise CommandError("no .ndjson or .ndjson.gz file found", returncode=2)
        total = sum(_size(path) for path in files)
        with tqdm(
            total=total, unit="B", unit_scale=True, desc="ingest", disable=options["no_progress"], file=sys.stderr
        ) as bar:

            def progress(nbytes: int, nlines: int) -> None:
                bar.update(nbytes)

            ingester = Ingester(
                batch_size=options["batch_size"],
                restart=options["restart"],
                workers=self.workers(options["workers"]),
                on_progress=progress,
            )
            try:
                summary = ingester.run(files)
            except DatabaseError as exc:
                raise CommandError(f"database error, the run stopped (resume by running again): {exc}") from exc
        for line in summary.lines_text():
            self.stdout.write(line)
        if summary.broken:
            raise CommandError(
                f"{len(summary.broken)} file(s) cut short, damaged or unreadable: the lines before each break were"
                " ingested and the breaks quarantined; fetch those files again and re-run",
                returncode=BROKEN_FILES,
            )

    def workers(self, requested: int | None) -> int:
        if requested is not None:
            return max(0, requested)
        # SQLite allows one writer and its inserts are the bottleneck: parallel parsing buys nothing. On
        # PostgreSQL two parsers keep the database busy even when another process takes a core for a while;
        # the pipeline holds at most workers + 1 parsed batches, so an idle parser costs only its memory.
        return 2 if connection.vendor == "postgresql" else 0
