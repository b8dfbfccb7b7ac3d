from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from datadomain import custodian
from datadomain.errors import DomainError
from securecompute.errors import SecureComputeError

NEW_KEK_VARIABLE = "NEW_CUSTODIAN_KEK"


class Command(BaseCommand):
    help = (
        "Re-seal every custodian private key under a new key-encryption key (KEK). The current KEK comes from "
        "CUSTODIAN_KEK (or CUSTODIAN_KEK_FILE), the new one from --new-kek-file PATH or the NEW_CUSTODIAN_KEK "
        "environment variable; neither is ever printed. Run it on the custodian host with the custodian "
        "stopped. Safe to run again: a key already sealed under the new KEK is skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--new-kek-file", help="file holding the new KEK: 32 raw bytes, 64 hex digits or base64")
        parser.add_argument("--by", default="", help="who carries out the rotation (for the audit log)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            old_kek, new_kek = custodian.kek_current(), self._new_kek(options["new_kek_file"])
            count = custodian.kek_rotate(
                old_kek=old_kek, new_kek=new_kek, actor=options["by"] or "manage.py rotate_kek", progress=self._line
            )
        except (DomainError, SecureComputeError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Re-sealed {count} key file(s) under the new KEK."))
        self.stdout.write(
            "Next: set CUSTODIAN_KEK (or the file CUSTODIAN_KEK_FILE names) to the new KEK and restart the "
            "custodian; the old KEK opens none of these files any more."
        )

    def _new_kek(self, file_name: str | None) -> bytes:
        from_env = os.environ.get(NEW_KEK_VARIABLE, "")
        if file_name and from_env:
            raise CommandError(f"Give the new KEK once: --new-kek-file or {NEW_KEK_VARIABLE}, not both.")
        if file_name:
            try:
                return custodian.kek_parse(Path(file_name).read_bytes())
            except OSError as exc:
                raise CommandError(f"Cannot read --new-kek-file: {exc.strerror}.") from exc
        if from_env:
            return custodian.kek_parse(from_env.encode())
        raise CommandError(f"No new KEK: pass --new-kek-file PATH or set {NEW_KEK_VARIABLE}.")

    def _line(self, key_id: str, what: str) -> None:
        self.stdout.write(f"key {key_id}: {what}")
