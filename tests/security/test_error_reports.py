"""Error reports never show our secrets: not on Django's technical 500 page, not in the mail to ADMINS.

Django's own filter hides settings named like API, KEY, SECRET, PASS, TOKEN ... but not ``CUSTODIAN_KEK``
or ``SUBJECT_PEPPER``, nor a password inside a URL; ops.error_reports.SecretsHidingFilter does.
"""

from __future__ import annotations

import logging
import secrets
import sys
from typing import Any

import pytest
from django.core import mail
from django.test import RequestFactory
from django.utils.log import AdminEmailHandler
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter, get_default_exception_reporter_filter

from ops.error_reports import SecretsHidingFilter


@pytest.fixture
def planted(settings: Any) -> dict[str, str]:
    """Fresh secret values in the settings, the way production has them."""
    values = {
        "kek": secrets.token_hex(32),
        "pepper": secrets.token_urlsafe(32),
        "audit": secrets.token_urlsafe(32),
        "redis": secrets.token_urlsafe(12),
        "database": secrets.token_urlsafe(12),
        "replica": secrets.token_urlsafe(12),
    }
    settings.CUSTODIAN_KEK = values["kek"]
    settings.SUBJECT_PEPPER = values["pepper"]
    settings.AUDIT_KEY = values["audit"]
    settings.CELERY_BROKER_URL = f"redis://:{values['redis']}@redis:6379/0"
    settings.REPLICA_DATABASE = {"NAME": "reports", "PASSWORD": values["database"]}
    settings.REPORTING = {"targets": [{"url": f"postgres://reader:{values['replica']}@replica:5432/reports"}]}
    return values


def leaked(text: str, values: dict[str, str]) -> list[str]:
    return [name for name, value in values.items() if value in text]


def test_our_filter_is_the_default() -> None:
    assert isinstance(get_default_exception_reporter_filter(), SecretsHidingFilter)


def test_safe_settings_hide_our_secrets(planted: dict[str, str]) -> None:
    safe = repr(get_default_exception_reporter_filter().get_safe_settings())
    assert leaked(safe, planted) == []
    assert "redis://:********************@redis:6379/0" in safe  # the rest of the URL stays readable
    # Django's own filter shows them: what this filter is for.
    assert {"kek", "pepper", "redis", "replica"} <= set(
        leaked(repr(SafeExceptionReporterFilter().get_safe_settings()), planted)
    )


def failing_view(kek: str, pepper: str, database_url: str) -> None:
    new_kek = kek  # noqa: F841 - a local the report would show
    raise RuntimeError("the custodian could not unseal a key")


def report_of_failure(planted: dict[str, str]) -> ExceptionReporter:
    request = RequestFactory().get(
        "/admin/",
        # The development server copies the process environment into request.META.
        CUSTODIAN_KEK=planted["kek"],
        NEW_CUSTODIAN_KEK=planted["kek"],
        SUBJECT_PEPPER=planted["pepper"],
        DATABASE_URL=f"postgres://underwriting:{planted['database']}@postgres:5432/underwriting",
    )
    kek, pepper, database_url = planted["kek"], planted["pepper"], f"postgres://u:{planted['database']}@db/x"
    del planted  # the report shows every frame's variables: keep only what a view would hold
    try:
        failing_view(kek, pepper, database_url)
    except RuntimeError:
        return ExceptionReporter(request, *sys.exc_info())
    raise AssertionError("unreachable")


def test_the_technical_500_report_shows_no_secret(planted: dict[str, str]) -> None:
    reporter = report_of_failure(planted)
    text, html = reporter.get_traceback_text(), reporter.get_traceback_html()
    assert "CUSTODIAN_KEK" in text  # the settings and META sections were rendered, only their values hidden
    assert "could not unseal" in text
    assert leaked(text, planted) == []
    assert leaked(html, planted) == []


def test_the_mail_to_admins_shows_no_secret(planted: dict[str, str], settings: Any) -> None:
    settings.ADMINS = [("Operations", "ops@bureau.example")]
    reporter = report_of_failure(planted)
    record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Internal Server Error", (), None)
    record.request = reporter.request
    record.exc_info = (reporter.exc_type, reporter.exc_value, reporter.tb)  # type: ignore[assignment]
    AdminEmailHandler(include_html=True).emit(record)
    [message] = mail.outbox
    bodies = [str(message.body)] + [str(content) for content, _ in getattr(message, "alternatives", [])]
    assert "could not unseal" in message.body
    for body in bodies:
        assert leaked(body, planted) == []
