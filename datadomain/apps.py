from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DatadomainConfig(AppConfig):
    name = "datadomain"
    verbose_name = _("Data domain")

    def ready(self) -> None:
        from django.conf import settings

        if settings.CELERY_TASK_ALWAYS_EAGER:
            # Without a broker this one process is every worker, the custodian included; with a broker
            # only the custodian worker imports the module (`celery worker --include datadomain.custodian`).
            import datadomain.custodian  # noqa: F401
