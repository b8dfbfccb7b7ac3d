"""Production settings: the base settings with HTTPS-only cookies, HSTS, a Content-Security-Policy and
JSON logs. Behind a TLS-terminating proxy that sets ``X-Forwarded-Proto``.

``DJANGO_SETTINGS_MODULE=config.settings.production python manage.py check --deploy`` is clean with the
variables of docker/.env.example filled in (tests/deploy/test_production_settings.py runs it).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from config.settings.base import *  # noqa: F403
from config.settings.base import (
    AUDIT_ANCHOR_SIGNING_KEY,
    AUDIT_KEY,
    CUSTODIAN_KEK,
    DATABASES,
    DEBUG,
    LOGGING,
    REDIS_URL,
    SECRET_KEY,
    SUBJECT_PEPPER,
)
from config.settings.env import env, public_secret_reason

if DEBUG:
    raise ImproperlyConfigured("config.settings.production refuses DEBUG=1; use config.settings.base for development.")

# --- Celery: never in-process ---------------------------------------------------------------------------
# Without a broker every task would run inside the web process, the custodian's included: the private key
# would be opened where requests are served, and the trust zones would be one process.
if not REDIS_URL:
    raise ImproperlyConfigured(
        "REDIS_URL must name the Celery broker: production never runs tasks in-process (docker/.env.example)."
    )

# --- secrets: never one published in this repository (a development default or an example's placeholder) ----
for _name, _value in {
    "SECRET_KEY": SECRET_KEY,
    "SUBJECT_PEPPER": SUBJECT_PEPPER,
    "AUDIT_KEY": AUDIT_KEY,
    "CUSTODIAN_KEK": CUSTODIAN_KEK,  # empty outside the custodian
    "AUDIT_ANCHOR_SIGNING_KEY": AUDIT_ANCHOR_SIGNING_KEY,  # empty outside the domain worker
    "WEBHOOK_SECRET_KEY": WEBHOOK_SECRET_KEY,  # noqa: F405 - empty: derived from SECRET_KEY
}.items():
    if _value and (_reason := public_secret_reason(_value)):
        raise ImproperlyConfigured(
            f"{_name} is {_reason}; production needs a new random value (docker/.env.example says how)."
        )

# --- the proxy in front: client addresses (sign-in lock-out) ------------------------------------------
# Behind the proxy every connection comes from it: without TRUSTED_PROXIES every user would share the
# proxy's address, and one attacker's failed sign-ins would lock them all out (ops/client_address.py).
if not TRUSTED_PROXIES:  # noqa: F405
    raise ImproperlyConfigured(
        "TRUSTED_PROXIES must name the proxy in front of gunicorn (docker/README.md, "
        '"The proxy in front, and client addresses").'
    )

# --- HTTPS -----------------------------------------------------------------------------------------
# The proxy terminates TLS; trust its X-Forwarded-Proto (gunicorn's FORWARDED_ALLOW_IPS names the proxy).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# Probes and the scraper talk plain HTTP inside the deployment's network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
CSRF_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SECURE = True
LANGUAGE_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- Content-Security-Policy: the base settings' (django-csp), the same in development -----------------

# --- metrics -------------------------------------------------------------------------------------
# /metrics answers only a scraper sending "Authorization: Bearer $METRICS_TOKEN"; without a token set it
# answers 404 to everyone rather than open (docker/README.md, "Health and metrics").
METRICS_REQUIRE_TOKEN = True

# --- database ----------------------------------------------------------------------------------------
# A database that does not answer fails a request within seconds (503), rather than holding a thread.
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env.int("DATABASE_CONNECT_TIMEOUT", default=5)

# --- logs: JSON lines with request ids ------------------------------------------------------------
LOGGING["handlers"]["console"]["formatter"] = env.str("LOG_FORMAT", default="json")  # type: ignore[index]
