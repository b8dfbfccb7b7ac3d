from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.approvals import ApprovalError
from datadomain import custodian
from securecompute.errors import SecureComputeError


class Command(BaseCommand):
    help = (
        "Carry out an approved four-eyes key rotation (asked for and approved in the admin): a new active key; "
        "the previous one turns 'retiring' and keeps answering for requests already under way. With "
        "--reencrypt, stored feature vectors are re-encrypted under the new key and retiring keys no "
        "ciphertext uses any more are retired."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--approval", type=int, required=True, help="id of the approved rotation request")
        parser.add_argument("--by", required=True, help="username of the key officer carrying it out")
        parser.add_argument("--bits", type=int, default=None, help="modulus size (default PAILLIER_KEY_BITS)")
        parser.add_argument("--reencrypt", action="store_true", help="precompute under the new key, then retire")

    def handle(self, *args: Any, **options: Any) -> None:
        officer = get_user_model().objects.filter(username=options["by"]).first()
        if officer is None:
            raise CommandError(f"No user '{options['by']}'.")
        bits = options["bits"] or settings.PAILLIER_KEY_BITS
        try:
            key = custodian.keypair_rotate_approved(approval_id=options["approval"], executed_by=officer, bits=bits)
        except (ApprovalError, SecureComputeError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"New active key {key.key_id} ({bits} bits)."))
        if options["reencrypt"]:
            call_command(
                "precompute_features", "--key-id", key.key_id, "--features", "*", stdout=self.stdout, stderr=self.stderr
            )
            dropped = custodian.vectors_drop_retiring()
            self.stdout.write(f"Dropped {dropped} stored vectors under retiring keys.")
        retired = custodian.keys_retire_unused()
        for key_id in retired:
            self.stdout.write(f"Retired key {key_id}: no stored ciphertext uses it; its sealed file is deleted.")
