from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management.base import BaseCommand, CommandError, CommandParser, no_translations

from audit import anchors


class Command(BaseCommand):
    help = (
        "Make a new Ed25519 key pair for the audit anchors and print it as two settings: "
        "AUDIT_ANCHOR_SIGNING_KEY (a secret, for the domain worker alone) and AUDIT_ANCHOR_PUBLIC_KEYS "
        "(for every verifier; append it to the keys already listed). Nothing is stored. With --public, print "
        "only the public half of the configured AUDIT_ANCHOR_SIGNING_KEY."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--public", action="store_true", help="the public half of the configured signing key")

    @no_translations
    def handle(self, *args: Any, **options: Any) -> None:
        if options["public"]:
            try:
                key = anchors.signing_key()
            except anchors.AnchorError as exc:
                raise CommandError(str(exc)) from None
        else:
            key = Ed25519PrivateKey.generate()
            self.stdout.write(f"AUDIT_ANCHOR_SIGNING_KEY={key.private_bytes_raw().hex()}")
        self.stdout.write(f"AUDIT_ANCHOR_PUBLIC_KEYS={anchors.public_hex(key.public_key())}")
