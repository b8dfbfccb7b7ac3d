from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from datadomain import custodian


class Command(BaseCommand):
    help = (
        "On the custodian host: retire every 'retiring' key that no stored ciphertext uses any more and delete "
        "its sealed private key (after `precompute_features --replace-retiring` in the data domain)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        retired = custodian.keys_retire_unused()
        for key_id in retired:
            self.stdout.write(f"Retired key {key_id}: no stored ciphertext uses it; its sealed file is deleted.")
        if not retired:
            self.stdout.write("No retiring key is unused yet: re-encrypt the stored vectors first.")
