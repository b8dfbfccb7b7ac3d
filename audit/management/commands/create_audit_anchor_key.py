from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management.base import BaseCommand

from audit import anchors


class Command(BaseCommand):
    help = (
        "Make a new Ed25519 key pair for the audit anchors and print it as two settings: "
        "AUDIT_ANCHOR_SIGNING_KEY (a secret, for the domain worker alone) and AUDIT_ANCHOR_PUBLIC_KEYS "
        "(for every verifier; append it to the keys already listed). Nothing is stored."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        key = Ed25519PrivateKey.generate()
        self.stdout.write(f"AUDIT_ANCHOR_SIGNING_KEY={key.private_bytes_raw().hex()}")
        self.stdout.write(f"AUDIT_ANCHOR_PUBLIC_KEYS={anchors.public_hex(key.public_key())}")
