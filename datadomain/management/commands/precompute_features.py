from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from datadomain import catalog, keyring, services
from datadomain.errors import DomainError
from datadomain.precompute import Shard, precompute

# The features of the built-in `charlson-acci` manual: the default set to precompute.
CHARLSON_ACCI = [name for name in catalog.current().names() if name.startswith("charlson.")] + ["age.acci_points"]


class Command(BaseCommand):
    help = (
        "Precompute encrypted feature vectors for every subject under a custodian public key, using all "
        "cores for encryption. Fresh stored vectors are kept; stale ones (new records, new catalog) are redone. "
        "After a key rotation, run it with --replace-retiring to re-encrypt every stored vector under the new "
        "key and drop the old ones (the custodian then retires keys nothing uses: `manage.py retire_keys`). "
        "To spread the work over N machines that reach the same database, run it on each with its own "
        "--shard K/N (K = 0 to N-1): each subject belongs to exactly one shard, and a shard run twice redoes "
        "nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as-of", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default today)")
        parser.add_argument(
            "--features",
            default="",
            help="comma-separated catalog names or prefixes ending in '*' (default: the charlson-acci set)",
        )
        parser.add_argument("--key-id", default=None, help="custodian key id (default: the active key)")
        parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
        parser.add_argument("--chunk-size", type=int, default=200)
        parser.add_argument("--limit", type=int, default=None, help="only the first N subjects (by id) of the shard")
        parser.add_argument(
            "--shard",
            type=_shard,
            default=Shard(),
            metavar="K/N",
            help="only the subjects whose subject key falls in share K of N (K from 0 to N-1; default 0/1, "
            "every subject); the N shares together cover every subject exactly once, on any machine. Give every "
            "machine the same N, --as-of and --features",
        )
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--replace-retiring",
            action="store_true",
            help="after precomputing under the active key, delete stored vectors under retiring keys",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        names = self.feature_names(options["features"])
        shard: Shard = options["shard"]
        # Refused before the work, not after it: a shard of a city's subjects takes hours.
        if options["replace_retiring"] and (options["key_id"] or options["limit"] or shard.count > 1):
            raise CommandError(
                "--replace-retiring needs the active key and every subject (no --key-id, --limit, --shard); "
                "after every shard has finished, run it once without --shard."
            )
        try:
            if options["key_id"]:
                key_id, public_key = options["key_id"], keyring.public_key(options["key_id"])
            else:
                key_id, public_key = keyring.active_public_key()
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        as_of = options["as_of"] or timezone.localdate()
        started = time.monotonic()
        with tqdm(
            total=min(shard.subjects().count(), options["limit"] or 10**12),
            unit="subject",
            disable=options["no_progress"],
            file=sys.stderr,
        ) as bar:
            result = precompute(
                public_key=public_key,
                feature_names=names,
                as_of=as_of,
                processes=max(1, options["processes"]),
                chunk_size=options["chunk_size"],
                limit=options["limit"],
                shard=shard,
                on_progress=bar.update,
            )
        seconds = time.monotonic() - started
        share = f", shard {shard.index}/{shard.count}" if shard.count > 1 else ""
        self.stdout.write(
            f"key {key_id}, {len(names)} features, as of {as_of}{share}: {result.subjects} subjects, "
            f"{result.encrypted} encrypted, {result.already_fresh} already fresh, {seconds:.1f} s, "
            f"{result.encrypted / seconds if seconds else 0:.1f} subjects/s"
        )
        if options["replace_retiring"]:
            dropped = services.vectors_drop_retiring()
            self.stdout.write(
                f"Dropped {dropped} stored vectors under retiring keys; run `retire_keys` on the custodian."
            )

    def feature_names(self, spec: str) -> list[str]:
        if not spec:
            return CHARLSON_ACCI
        available = catalog.current().names()
        names: list[str] = []
        for item in (part.strip() for part in spec.split(",") if part.strip()):
            matched = [n for n in available if n.startswith(item[:-1])] if item.endswith("*") else [item]
            unknown = [n for n in matched if n not in available]
            if unknown or not matched:
                raise CommandError(f"unknown catalog feature: {item}", returncode=2)
            names.extend(n for n in matched if n not in names)
        return names


def _shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
