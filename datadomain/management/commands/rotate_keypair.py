from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.approvals import ApprovalError
from datadomain import custodian
from securecompute.errors import SecureComputeError


class Command(BaseCommand):
    help = (
        "Carry out an approved four-eyes key rotation (asked for and approved in the admin): a new active key; "
        "the previous one turns 'retiring' and keeps answering for requests already under way. Runs on the "
        "custodian host. Then set CUSTODIAN_KEY_ID to the new key id, re-encrypt in the data domain "
        "(`precompute_features --replace-retiring`) and retire the old key here (`retire_keys`)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--approval", type=int, required=True, help="id of the approved rotation request")
        parser.add_argument("--by", required=True, help="username of the key officer carrying it out")
        parser.add_argument("--bits", type=int, default=None, help="modulus size (default PAILLIER_KEY_BITS)")

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
        self.stdout.write(
            f"Next: set CUSTODIAN_KEY_ID={key.key_id} for every service; on a data-domain host run "
            "`manage.py precompute_features --features '*' --replace-retiring`; then here `manage.py retire_keys`."
        )
        for key_id in custodian.keys_retire_unused():  # an old key no vector or request in flight uses
            self.stdout.write(f"Retired key {key_id}: no stored ciphertext uses it; its sealed file is deleted.")
