from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from datadomain import custodian
from datadomain.models import CustodianKey
from securecompute.errors import SecureComputeError


class Command(BaseCommand):
    help = (
        "Create the custodian's Paillier key pair: the private key sealed (AES-256-GCM under CUSTODIAN_KEK) "
        "in CUSTODIAN_KEY_DIR with mode 0600, the public key in the database. Refuses if a key is active "
        "(rotations are four-eyes: asked for and approved in the admin, carried out by rotate_keypair --approval)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bits", type=int, default=None, help="modulus size (default PAILLIER_KEY_BITS)")

    def handle(self, *args: Any, **options: Any) -> None:
        if CustodianKey.objects.filter(status=CustodianKey.Status.ACTIVE).exists():
            raise CommandError(
                "A custodian key is already active; to replace it, ask for a rotation in the admin and, once "
                "another key officer approved it, run `manage.py rotate_keypair --approval ID --by USER`."
            )
        bits = options["bits"] or settings.PAILLIER_KEY_BITS
        try:
            key = custodian.keypair_create(bits=bits)
        except SecureComputeError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Created key {key.key_id} ({bits} bits); sealed at {key.sealed_path}."))
        self.stdout.write(f"Pin it for every service: CUSTODIAN_KEY_ID={key.key_id}")
