"""config.settings.production passes Django's deployment checks and sends the security headers."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core import checks

from config.settings.env import DEV_DEFAULTS, public_secret_reason
from ops.checks import check_secrets

ROOT = Path(__file__).resolve().parent.parent.parent


def production_env(**overrides: str) -> dict[str, str]:
    # Nothing inherited from the test settings (they put development secrets into os.environ).
    inherited = ("DJANGO_", "TEST_", "SECRET_KEY", "SUBJECT_PEPPER", "AUDIT_KEY", "CUSTODIAN_KEK")
    env = {key: value for key, value in os.environ.items() if not key.startswith(inherited)}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "SUBJECT_PEPPER": secrets.token_urlsafe(32),
            "AUDIT_KEY": secrets.token_urlsafe(32),
            "CUSTODIAN_KEY_ID": secrets.token_hex(8),
            "ALLOWED_HOSTS": "underwriting.example.org,testserver",
            "TRUSTED_PROXIES": "172.30.0.1",
            "DATABASE_URL": os.environ.get("DATABASE_URL", "") or "postgres://u:p@127.0.0.1:1/none",
            "REDIS_URL": os.environ.get("REDIS_URL", "") or "redis://127.0.0.1:1/0",
            **overrides,
        }
    )
    return env


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_check_deploy_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=production_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_debug() -> None:
    result = run_python("import django; django.setup()", production_env(DEBUG="1"))
    assert result.returncode != 0
    assert "refuses DEBUG" in result.stderr


def test_production_refuses_to_run_tasks_in_process() -> None:
    result = run_python("import django; django.setup()", production_env(REDIS_URL=""))
    assert result.returncode != 0
    assert "REDIS_URL must name the Celery broker" in result.stderr


def test_production_requires_the_proxy_it_sits_behind() -> None:
    result = run_python("import django; django.setup()", production_env(TRUSTED_PROXIES=""))
    assert result.returncode != 0
    assert "TRUSTED_PROXIES must name the proxy" in result.stderr


def test_production_requires_its_secrets() -> None:
    env = production_env()
    env.pop("SECRET_KEY")
    result = run_python("import django; django.setup()", env)
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        *DEV_DEFAULTS.items(),
        ("AUDIT_KEY", "change-me-to-a-long-random-value"),  # docker/.env.example's placeholder word
        ("CUSTODIAN_KEK", "7e57" * 16),  # the test settings' KEK
    ],
)
def test_production_refuses_published_secrets(name: str, value: str) -> None:
    result = run_python("import django; django.setup()", production_env(**{name: value}))
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name} is a" in result.stderr
    assert value not in result.stderr  # the refusal does not repeat the value


def test_check_deploy_flags_weak_secrets_and_a_missing_key_pin() -> None:
    env = production_env(
        SUBJECT_PEPPER=secrets.token_urlsafe(12),
        CUSTODIAN_KEK=secrets.token_hex(20),
        DATABASE_URL="postgres://underwriting:change-me@127.0.0.1:1/none",
    )
    env.pop("CUSTODIAN_KEY_ID")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    for check_id in ("ops.W001", "ops.W002", "ops.W003", "ops.W004"):
        assert check_id in output, output
    assert "SUBJECT_PEPPER has 16 characters" in output
    assert env["CUSTODIAN_KEK"] not in output


def test_check_deploy_errors_on_development_defaults(settings: Any) -> None:
    """config.settings.production refuses them at start-up; the check says so under any settings module."""
    settings.SUBJECT_PEPPER = DEV_DEFAULTS["SUBJECT_PEPPER"]
    settings.CUSTODIAN_KEK = DEV_DEFAULTS["CUSTODIAN_KEK"]
    settings.CUSTODIAN_KEY_ID = "0123456789abcdef"
    settings.AUDIT_KEY = secrets.token_urlsafe(32)
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    messages = check_secrets(app_configs=None, databases=None)
    assert [(m.id, m.msg.split()[0]) for m in messages] == [
        ("ops.E001", "SUBJECT_PEPPER"),
        ("ops.E001", "CUSTODIAN_KEK"),
    ]
    assert all(m.level == checks.ERROR for m in messages)


@pytest.mark.parametrize(
    "value",
    [*DEV_DEFAULTS.values(), "change-me", "CHANGEME", "test-audit-key", "django-insecure-abc123", "ab" * 32, "secret"],
)
def test_published_and_placeholder_values_are_recognised(value: str) -> None:
    assert public_secret_reason(value)


def test_random_values_pass() -> None:
    for _ in range(200):
        assert public_secret_reason(secrets.token_urlsafe(32)) == ""
        assert public_secret_reason(secrets.token_hex(32)) == ""


HEADERS_PROBE = """
import django, json
django.setup()
from django.test import Client
response = Client().get("/healthz", secure=True, HTTP_X_REQUEST_ID="probe-12345678")
plain = Client().get("/portal/login/")
print(json.dumps({"status": response.status_code, "headers": dict(response.headers),
                  "plain_status": plain.status_code, "plain_location": plain.headers.get("Location", "")}))
"""


@pytest.fixture(scope="module")
def probe() -> dict[str, object]:
    result = run_python(HEADERS_PROBE, production_env())
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_security_headers(probe: dict[str, object]) -> None:
    headers = probe["headers"]
    assert isinstance(headers, dict)
    assert probe["status"] == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self';" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Request-ID"] == "probe-12345678"


def test_plain_http_is_redirected_to_https(probe: dict[str, object]) -> None:
    assert probe["plain_status"] == 301
    assert str(probe["plain_location"]).startswith("https://")


def test_cookies_are_secure_in_production() -> None:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, "
        "s.LOGGING['handlers']['console']['formatter'])"
    )
    result = run_python(code, production_env())
    assert result.stdout.split() == ["True", "True", "True", "json"], result.stderr
