from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from underwriting.services.webhooks import webhook_secrets_reencrypt
from underwriting.webhook_secrets import SecretUnreadableError


class Command(BaseCommand):
    help = (
        "Encrypt every webhook signing secret again under the current WEBHOOK_SECRET_KEY (run after changing it, "
        "with the old value in WEBHOOK_SECRET_KEY_FALLBACKS; then remove the fallback)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = webhook_secrets_reencrypt()
        except SecretUnreadableError as exc:
            raise CommandError(f"{exc}: list the previous key in WEBHOOK_SECRET_KEY_FALLBACKS.") from exc
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} webhook signing secrets."))
