"""What Django's error reports may show: the technical 500 page and the mail ``AdminEmailHandler`` sends.

Django's :class:`~django.views.debug.SafeExceptionReporterFilter` hides settings, request metadata and
cookies whose names match ``API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE``. Several of ours are
named otherwise: ``CUSTODIAN_KEK`` (it unseals every private key), ``SUBJECT_PEPPER`` (with it anyone can
turn a resident ID into its subject key), and URLs carry passwords inside their values (``REDIS_URL``,
``CELERY_BROKER_URL``, a cache ``LOCATION``, and ``DATABASE_URL`` among the environment variables the
development server copies into ``request.META``). :class:`SecretsHidingFilter` hides those names, blanks
the password of any ``scheme://user:password@host`` in a value, and (with DEBUG off, as Django's filter)
hides traceback variables with such names (``kek``, ``new_kek``, ``pepper``, ``private_key``).
"""

from __future__ import annotations

import re
from types import FrameType
from typing import Any

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter

HIDDEN_NAMES = re.compile(
    r"API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|KEK|PEPPER|SALT|CREDENTIAL|PRIVATE|DSN", flags=re.I
)
# The password of a URL's userinfo: what follows "scheme://user:" up to the "@".
URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/?#@]*:)[^\s/?#@]+(?=@)", flags=re.I)


class SecretsHidingFilter(SafeExceptionReporterFilter):
    """Django's filter with the project's secret names and no password inside a URL (module docstring)."""

    hidden_settings = HIDDEN_NAMES

    def cleanse_setting(self, key: int | str, value: Any) -> Any:
        # Nested dicts, lists and tuples come back through here, so their strings are scrubbed too.
        return self._without_url_passwords(super().cleanse_setting(key, value))

    def get_traceback_frame_variables(self, request: HttpRequest | None, tb_frame: FrameType) -> Any:
        variables = super().get_traceback_frame_variables(request, tb_frame)
        if not self.is_active(request):
            return variables
        return [
            (name, self.cleansed_substitute if HIDDEN_NAMES.search(name) else self._without_url_passwords(value))
            for name, value in variables
        ]

    def _without_url_passwords(self, value: Any) -> Any:
        if isinstance(value, str):
            return URL_PASSWORD.sub(rf"\g<head>{self.cleansed_substitute}", value)
        return value
