from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = _("Operations")

    def ready(self) -> None:
        # Connects the Celery signal handlers; registers the deployment checks on secrets.
        from ops import checks, embedded_beat, signals  # noqa: F401

        embedded_beat.maybe_start()
