from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class InsurerPortalConfig(AppConfig):
    name = "insurer_portal"
    verbose_name = _("Insurer portal")
