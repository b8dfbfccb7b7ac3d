"""Settings shared by every deployment; every difference comes from the environment.

See README.md ("Configuration") and docker/.env.example for the variables.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import django_stubs_ext
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.utils.translation import gettext_lazy as _
from kombu import Queue
from python_ipware import IpWare

from config.settings.env import DEV_DEFAULTS, csp_directives, env, secret

# Generic admin/queryset classes (ModelAdmin[Model]) at run time, as the type stubs describe them.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = secret("SECRET_KEY", dev_default=DEV_DEFAULTS["SECRET_KEY"] if DEBUG else None)
# The pepper of the pseudonymous subject key HMAC-SHA256(pepper, resident_id). Changing it
# re-keys every subject, so production must pin it.
SUBJECT_PEPPER = secret("SUBJECT_PEPPER", dev_default=DEV_DEFAULTS["SUBJECT_PEPPER"] if DEBUG else None)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- FHIR ingest (manage.py ingest_fhir) ---------------------------------------------------------
# Longest NDJSON line read, in bytes: a longer one is quarantined without ever being held whole.
INGEST_MAX_LINE_BYTES = env.int("INGEST_MAX_LINE_BYTES", default=4 * 1024 * 1024)

# --- key custodian -------------------------------------------------------------------------------
CUSTODIAN_KEY_DIR = Path(env.str("CUSTODIAN_KEY_DIR", default=str(VAR_DIR / "keys")))
PAILLIER_KEY_BITS = env.int("PAILLIER_KEY_BITS", default=3072)
# Key-encryption key sealing the custodian's private keys at rest (AES-256-GCM): 32 random bytes as 64 hex
# digits or base64 (python -c "import secrets; print(secrets.token_hex(32))"), or CUSTODIAN_KEK_FILE.
# Only the custodian needs it; other processes never read it.
CUSTODIAN_KEK = secret(
    "CUSTODIAN_KEK",
    # A fixed, public, development-only KEK. Without DEBUG, processes other than the custodian run
    # without one (empty); the custodian refuses an empty KEK the moment it needs a key.
    dev_default=DEV_DEFAULTS["CUSTODIAN_KEK"] if DEBUG else "",
)

# --- audit log -----------------------------------------------------------------------------------
# HMAC key of the audit hash chain. Only the chainer and the verifier use it; writers only INSERT.
AUDIT_KEY = secret("AUDIT_KEY", dev_default=DEV_DEFAULTS["AUDIT_KEY"] if DEBUG else None)
# An entry still unchained this many seconds after it was written fails verification (the chainer runs
# every AUDIT_CHAIN_SECONDS; the rest allows for a busy domain queue and long writer transactions).
AUDIT_CHAIN_GRACE_SECONDS = env.float("AUDIT_CHAIN_GRACE_SECONDS", default=30.0)
# Signed anchors (the chain head), each in a new file that is never overwritten: mount append-only or WORM
# storage here, or ship the files elsewhere (README, "Audit"). Verification checks every anchor found here.
AUDIT_ANCHOR_DIR = Path(env.str("AUDIT_ANCHOR_DIR", default=str(VAR_DIR / "audit-anchors")))
# Seconds between anchors (beat); verification fails when the newest is older than twice this.
AUDIT_ANCHOR_SECONDS = env.float("AUDIT_ANCHOR_SECONDS", default=900.0)
# Ed25519 key that signs the anchors: 64 hex digits (`manage.py create_audit_anchor_key`), or
# AUDIT_ANCHOR_SIGNING_KEY_FILE. Only the domain worker, which exports anchors, needs it.
AUDIT_ANCHOR_SIGNING_KEY = secret(
    "AUDIT_ANCHOR_SIGNING_KEY", dev_default=DEV_DEFAULTS["AUDIT_ANCHOR_SIGNING_KEY"] if DEBUG else ""
)
# The public keys anchors are checked with (64 hex digits each, comma-separated; keep old ones after a
# change of signing key). Empty: the signing key's own public half.
AUDIT_ANCHOR_PUBLIC_KEYS = env.list("AUDIT_ANCHOR_PUBLIC_KEYS", default=[])
# Seconds between full verifications of the chain and its anchors (beat; failures are logged as errors).
AUDIT_VERIFY_SECONDS = env.float("AUDIT_VERIFY_SECONDS", default=3600.0)

# --- applications --------------------------------------------------------------------------------
INSTALLED_APPS = [
    "ops.admin_apps.BureauAdminConfig",  # django.contrib.admin with the bureau's site: TOTP sign-in, dashboard
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "pgtrigger",  # database triggers declared on models (audit's append-only guard), installed by migrations
    "ops",
    "audit",
    "datadomain",
    "tenants",
    "underwriting",
    "insurer_portal",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "csp",  # django-csp: its checks (ops.middleware.ContentSecurityPolicyMiddleware sends the header)
    "axes",  # sign-in lock-out (portal and admin): insurer_portal.lockout
]

MIDDLEWARE = [
    "ops.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "ops.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "ops.middleware.RequestBodyLimitMiddleware",  # before anything reads the body (CSRF reads forms)
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: a locked-out sign-in page becomes a 429 with Retry-After.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
# Error reports (the technical 500 page, mail to ADMINS) hide our secrets too: KEK, pepper, URL passwords.
DEFAULT_EXCEPTION_REPORTER_FILTER = "ops.error_reports.SecretsHidingFilter"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database ------------------------------------------------------------------------------------
# Unset DATABASE_URL means the embedded default: an SQLite file under VAR_DIR.
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Each trust zone connects as its own role (ops/db_zones.py); its password may stay out of DATABASE_URL,
# in DATABASE_PASSWORD or a Docker secret named by DATABASE_PASSWORD_FILE.
if _database_password := secret("DATABASE_PASSWORD", dev_default=""):
    DATABASES["default"]["PASSWORD"] = _database_password
# Roles are named DB_ROLE_PREFIX + zone (underwriting_web ...); `manage.py db_roles` creates and grants them.
DB_ROLE_PREFIX = env.str("DB_ROLE_PREFIX", default="underwriting_")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers and the web process share the file: wait for locks rather than failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- insurer portal sign-in -----------------------------------------------------------------------
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:dashboard"
# Idle sessions end: every request renews the cookie, so this is the inactivity limit (seconds).
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=30 * 60)
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
# --- sign-in lock-out, portal and admin (django-axes; the policy is in insurer_portal/lockout.py) -------
# Failed sign-ins (a password, a one-time code) counted for PORTAL_LOCKOUT_SECONDS after the latest one:
# PORTAL_LOCKOUT_FAILURES of one account from one client address lock that pair; PORTAL_ADDRESS_LOCKOUT_FAILURES
# from one address over all accounts, or PORTAL_ACCOUNT_THROTTLE_FAILURES of one account over all addresses,
# lock out every browser that has not signed in to that account before.
PORTAL_LOCKOUT_FAILURES = env.int("PORTAL_LOCKOUT_FAILURES", default=5)
PORTAL_LOCKOUT_SECONDS = env.int("PORTAL_LOCKOUT_SECONDS", default=15 * 60)
PORTAL_ADDRESS_LOCKOUT_FAILURES = env.int("PORTAL_ADDRESS_LOCKOUT_FAILURES", default=30)
PORTAL_ACCOUNT_THROTTLE_FAILURES = env.int("PORTAL_ACCOUNT_THROTTLE_FAILURES", default=20)
# The reverse proxies in front of gunicorn, one address or CIDR network per hop, outermost first, the one
# that connects to gunicorn last. X-Forwarded-For is believed only as far as these hops wrote it
# (ops/client_address.py); empty: no proxy, the client is the connection's own address.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
IpWare(proxy_list=TRUSTED_PROXIES)  # a malformed entry stops start-up (ValueError), not the first sign-in
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesBackend",  # refuses a locked-out sign-in before the password is checked
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "insurer_portal.lockout.SignInLockHandler"
AXES_CACHE = "default"
AXES_CLIENT_IP_CALLABLE = "ops.client_address.client_address"
AXES_USERNAME_CALLABLE = "insurer_portal.lockout.username_of"
AXES_USERNAME_FORM_FIELD = "username"  # set, so axes does not put a lazy object among the settings
AXES_LOCKOUT_CALLABLE = "insurer_portal.lockout.lockout_response"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address", "username"]
AXES_FAILURE_LIMIT = PORTAL_LOCKOUT_FAILURES
AXES_COOLOFF_TIME = timedelta(seconds=PORTAL_LOCKOUT_SECONDS)
# A lock ends PORTAL_LOCKOUT_SECONDS after the failure that set it: tries while locked are not counted.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_HTTP_RESPONSE_CODE = 429
AXES_ENABLE_ADMIN = False  # the counters live in the cache (hashed), not in axes' tables
AXES_VERBOSE = False
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Underwriting portal")
# The authenticator admin never shows a staff member's TOTP secret or QR code (enrolment shows it once).
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# Password-reset mail; the console backend prints it (development and the demo).
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="portal@localhost")
# Signed consent forms uploaded in the portal: kept only here, inside the data domain, by SHA-256.
CONSENT_STORE_DIR = Path(env.str("CONSENT_STORE_DIR", default=str(VAR_DIR / "consent-artifacts")))
# Signed forms sent through the API (POST /api/v1/consent-artifacts): PDF, JPEG or PNG up to this size.
# The API's body limit (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB) applies first; base64 adds a third.
CONSENT_ARTIFACT_MAX_BYTES = env.int("CONSENT_ARTIFACT_MAX_BYTES", default=2 * 1024 * 1024)
PORTAL_BATCH_MAX_ROWS = env.int("PORTAL_BATCH_MAX_ROWS", default=1000)
# An uploaded XLSX whose parts declare more than this, unpacked, is refused before it is read (zip bombs).
PORTAL_BATCH_MAX_UNCOMPRESSED_BYTES = env.int("PORTAL_BATCH_MAX_UNCOMPRESSED_BYTES", default=20 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# The largest request body the web process reads (a 5 MB upload and its form): a bigger one is answered
# 413 before it is read (ops.middleware.RequestBodyLimitMiddleware). API bodies stop at Django's
# DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB), also with a 413.
REQUEST_BODY_MAX_BYTES = 6 * 1024 * 1024

# --- internationalisation -------------------------------------------------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

# --- static files --------------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# In development, serve straight from the app and project static folders, no collectstatic needed.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env.str("STATICFILES_STORAGE", default="django.contrib.staticfiles.storage.StaticFilesStorage"),
    },
}

# --- REST API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "insurer_portal.api_docs.InsurerApiSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "insurer_portal.api_errors.api_exception_handler",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}
# The portal's font stack (static/css/app.css): the API docs load no web fonts.
SYSTEM_FONTS = 'system-ui, -apple-system, "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif'
SPECTACULAR_SETTINGS = {
    "TITLE": "Underwriting API",
    "DESCRIPTION": (
        "Privacy-preserving medical underwriting: submit a consented applicant and receive only a "
        "result tier. Raw medical records never leave the data domain."
    ),
    "VERSION": "1.0.0",
    # 3.1 for the webhooks (insurer_portal.api_docs: the events, their payload, signature and retries).
    "OAS_VERSION": "3.1.0",
    "WEBHOOKS": [
        f"insurer_portal.api_docs.{name}_WEBHOOK"
        for name in ("AWAITING_CONSENT", "COMPLETED", "REJECTED", "UNRATED", "FAILED", "TEST")
    ],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "insurer_portal.api_docs.add_guide_and_webhook_headers",
    ],
    "SERVE_INCLUDE_SCHEMA": False,
    # Self-hosted Swagger UI and ReDoc assets: no CDN, no web fonts, no online validator.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
    "REDOC_UI_SETTINGS": {
        "theme": {
            "typography": {
                "fontFamily": SYSTEM_FONTS,
                "headings": {"fontFamily": SYSTEM_FONTS},
                "code": {"fontFamily": "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"},
            }
        }
    },
}

# --- Celery --------------------------------------------------------------------------------------
# Unset REDIS_URL: tasks run eagerly in-process, so the embedded default needs no services.
REDIS_URL = env.str("REDIS_URL", default="")
# Without a broker, run beat's periodic jobs in the development server itself (ops/embedded_beat.py);
# `make run` turns it on. Ignored when REDIS_URL is set.
EMBEDDED_BEAT = env.bool("EMBEDDED_BEAT", default=False)
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"  # in-process: never connected to
# kombu's Redis transport with one redis-py client per channel instead of one per command (config.celery).
if REDIS_URL.startswith("redis://"):  # rediss:// keeps kombu's own, which turns TLS on by its scheme
    CELERY_BROKER_TRANSPORT = "config.celery:RedisTransport"
CELERY_RESULT_BACKEND = REDIS_URL or None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_QUEUES = [Queue(name) for name in ("domain", "scoring", "custodian", "webhooks")]
CELERY_TASK_DEFAULT_QUEUE = "domain"
# Each task names its queue on its decorator; this table repeats it by name for the processes that send a
# task without importing it (config.celery.enqueue), such as the scoring worker sending the custodian's.
# tests/test_celery.py keeps the two equal and every name real. ops.tasks.heartbeat has no entry: it is
# sent to every queue in turn.
CELERY_TASK_ROUTES = {
    f"{module}.{task}": {"queue": queue}
    for module, queue, tasks in [
        ("audit.tasks", "domain", ["chain_pending", "export_anchor", "verify_chain"]),
        (
            "datadomain.tasks",
            "domain",
            ["reprocess_quarantined", "mapping_apply", "resident_code_send", "residents_notify"],
        ),
        # The custodian is the only process holding the Paillier private key: its own queue, its own worker.
        ("datadomain.custodian", "custodian", ["answer_comparisons_batch", "rotate_keypair", "retire_key"]),
        # Reads raw records (extraction, explanations) or the audit log (misuse flags): the domain zone.
        ("underwriting.tasks", "domain", ["drain_extraction", "explain_subject", "evaluate_flags"]),
        ("underwriting.tasks", "scoring", ["drain_scoring", "finalize_requests", "sweep_requests"]),
        ("underwriting.tasks", "webhooks", ["deliver_webhook"]),
        ("insurer_portal.tasks", "domain", ["run_batch", "sweep_batches"]),
        ("ops.tasks", "domain", ["broadcast_heartbeat"]),
    ]
    for task in tasks
}
# A task is acknowledged only once it has finished, and a worker that dies mid-task (kill -9, OOM)
# hands the message back, so every task must be safe to run twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=90)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task running when the broker connection drops is left to finish (Celery 6 will cancel it by default):
# every step is safe to run twice and its rows are the truth, so its work is kept, not thrown away.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# With Redis, an unacknowledged message returns to its queue after the visibility timeout; keep it
# above the hard time limit so a slow task is never run twice while it is still running.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=300)}
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Task events are for live monitors such as Flower; off by default, because publishing them costs the
# workers about a seventh of their CPU (the Prometheus metrics come from task signals, not events).
CELERY_WORKER_SEND_TASK_EVENTS = env.bool("CELERY_SEND_TASK_EVENTS", default=False)
# Periodic jobs: later features add their entries here (task name and schedule in seconds or crontab).
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "worker-heartbeat": {
        "task": "ops.tasks.broadcast_heartbeat",
        "schedule": env.float("HEARTBEAT_SECONDS", default=30.0),
    },
    "sweep-stuck-requests": {
        "task": "underwriting.tasks.sweep_requests",
        "schedule": env.float("UNDERWRITING_SWEEP_SECONDS", default=15.0),
    },
    "sweep-stuck-batches": {"task": "insurer_portal.tasks.sweep_batches", "schedule": 60.0},
    "audit-chain": {"task": "audit.tasks.chain_pending", "schedule": env.float("AUDIT_CHAIN_SECONDS", default=5.0)},
    "audit-anchor": {"task": "audit.tasks.export_anchor", "schedule": AUDIT_ANCHOR_SECONDS},
    "audit-verify": {"task": "audit.tasks.verify_chain", "schedule": AUDIT_VERIFY_SECONDS},
    # "evaluate-misuse-flags" is added with FLAG_EVALUATE_SECONDS below.
}

# --- caches (API throttling) ----------------------------------------------------------------------
CACHES = {
    "default": (
        # Redis, or this process's memory while Redis does not answer (ops/cache.py).
        {
            "BACKEND": "ops.cache.RedisWithLocalFallback",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- underwriting ---------------------------------------------------------------------------------
# At most COUNT requests per (insurer, subject) within DAYS: bounds what repeated requests reveal.
UNDERWRITING_RATE_LIMIT_COUNT = env.int("UNDERWRITING_RATE_LIMIT_COUNT", default=3)
UNDERWRITING_RATE_LIMIT_DAYS = env.int("UNDERWRITING_RATE_LIMIT_DAYS", default=30)
# Per subject across every insurer and manual (no override lifts it): the bound on what repeated requests
# can reveal about one person (DESIGN.md, "Leakage over time").
UNDERWRITING_SUBJECT_LIMIT_COUNT = env.int("UNDERWRITING_SUBJECT_LIMIT_COUNT", default=6)
UNDERWRITING_SUBJECT_LIMIT_DAYS = env.int("UNDERWRITING_SUBJECT_LIMIT_DAYS", default=30)
UNDERWRITING_SUBJECT_LIMIT_YEAR = env.int("UNDERWRITING_SUBJECT_LIMIT_YEAR", default=24)
# Retries of a pipeline task before its request turns "failed".
UNDERWRITING_TASK_MAX_RETRIES = env.int("UNDERWRITING_TASK_MAX_RETRIES", default=3)
# A request whose step made no progress for this long is re-enqueued by the sweeper.
UNDERWRITING_STUCK_SECONDS = env.int("UNDERWRITING_STUCK_SECONDS", default=30)
# How many times the sweeper may re-enqueue one request before it turns "failed".
UNDERWRITING_MAX_ATTEMPTS = env.int("UNDERWRITING_MAX_ATTEMPTS", default=5)
# Requests a pipeline stage takes in one transaction (underwriting.services.pipeline): larger chunks cost
# fewer queries and messages per request under load; an idle stack moves each request on its own.
UNDERWRITING_STAGE_CHUNK = env.int("UNDERWRITING_STAGE_CHUNK", default=100)
# How long the custodian honours a request's comparison grant after the domain issued it. A query that
# reaches it later is answered with random signs (and flagged), and the scoring worker refuses answers
# that arrive after UNDERWRITING_GRANT_SECONDS minus one minute, so an outage never yields a wrong tier.
UNDERWRITING_GRANT_SECONDS = env.int("UNDERWRITING_GRANT_SECONDS", default=3600)
# How an insurer without a ConsentPolicy (bureau admin) proves consent: "declared" (the insurer's form
# hash only), "form" (the signed form must be in the consent store) or "resident" (the resident confirms on
# the bureau's resident page within UNDERWRITING_CONSENT_CONFIRMATION_HOURS).
UNDERWRITING_CONSENT_MODE = env.str("UNDERWRITING_CONSENT_MODE", default="declared")
UNDERWRITING_CONSENT_CONFIRMATION_HOURS = env.int("UNDERWRITING_CONSENT_CONFIRMATION_HOURS", default=72)

# --- residents: one-time codes and messages (residents/, datadomain.messaging) ----------------------------
# Where residents' codes and notices go: "console" (the server's stdout), "file" (RESIDENT_MESSAGE_DIR),
# "locmem" (tests) or "http" (an SMS gateway: SMS_GATEWAY_URL, SMS_GATEWAY_TOKEN or SMS_GATEWAY_TOKEN_FILE).
RESIDENT_MESSAGE_BACKEND = env.str("RESIDENT_MESSAGE_BACKEND", default="console")
RESIDENT_MESSAGE_DIR = Path(env.str("RESIDENT_MESSAGE_DIR", default=str(VAR_DIR / "messages")))
SMS_GATEWAY_URL = env.str("SMS_GATEWAY_URL", default="")
SMS_GATEWAY_TOKEN = env.str("SMS_GATEWAY_TOKEN", default="")
SMS_GATEWAY_TOKEN_FILE = env.str("SMS_GATEWAY_TOKEN_FILE", default="")
SMS_GATEWAY_TIMEOUT = env.float("SMS_GATEWAY_TIMEOUT", default=5.0)
SMS_GATEWAY_RETRIES = env.int("SMS_GATEWAY_RETRIES", default=3)
# The address residents open to confirm, in the notice sent to their phone.
RESIDENT_PAGE_URL = env.str("RESIDENT_PAGE_URL", default="http://127.0.0.1:8000/residents/")
RESIDENT_CODE_SECONDS = env.int("RESIDENT_CODE_SECONDS", default=300)
# Wrong codes before a resident ID (from one address) is locked for RESIDENT_LOCKOUT_SECONDS; codes sent
# per resident and per address in that time; wrong codes per address over every ID.
RESIDENT_CODE_FAILURES = env.int("RESIDENT_CODE_FAILURES", default=5)
RESIDENT_CODE_SENDS = env.int("RESIDENT_CODE_SENDS", default=5)
RESIDENT_ADDRESS_FAILURES = env.int("RESIDENT_ADDRESS_FAILURES", default=20)
RESIDENT_ADDRESS_SENDS = env.int("RESIDENT_ADDRESS_SENDS", default=20)
RESIDENT_LOCKOUT_SECONDS = env.int("RESIDENT_LOCKOUT_SECONDS", default=900)
RESIDENT_SESSION_SECONDS = env.int("RESIDENT_SESSION_SECONDS", default=900)
# The fingerprint (key id) of the custodian key new ciphertexts must be made under. Set in production:
# a key row planted in the database with another fingerprint is then refused. Empty: the active key.
CUSTODIAN_KEY_ID = env.str("CUSTODIAN_KEY_ID", default="")
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=10.0)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=5.0)
# Webhook URLs must name public internet hosts (underwriting.netguard, checked when saved and at each
# delivery), except these on-premise receivers: exact host names and networks (an address or a CIDR block),
# comma-separated. Every insurer may use an allowed receiver: list the receivers, not whole networks.
WEBHOOK_ALLOWED_PRIVATE_HOSTS = env.list("WEBHOOK_ALLOWED_PRIVATE_HOSTS", default=[])
# Results reach receivers outside the bureau's allowed on-premise ones over https only.
WEBHOOK_REQUIRE_HTTPS = env.bool("WEBHOOK_REQUIRE_HTTPS", default=True)
# Key of the webhook signing secrets at rest (underwriting.webhook_secrets). Empty: derived from SECRET_KEY
# by HKDF. Set it to give the key only to the web and webhook-worker processes; on a change, list the old
# value in WEBHOOK_SECRET_KEY_FALLBACKS and run `manage.py reencrypt_webhook_secrets`.
WEBHOOK_SECRET_KEY = secret("WEBHOOK_SECRET_KEY", dev_default="")
WEBHOOK_SECRET_KEY_FALLBACKS = env.list("WEBHOOK_SECRET_KEY_FALLBACKS", default=[])
# Misuse flags (underwriting.services.flags), evaluated every FLAG_EVALUATE_SECONDS by beat: one subject
# scored with at least FLAG_SUBJECT_MANUALS manuals by one insurer, or queried by FLAG_SUBJECT_INSURERS
# insurers, within FLAG_SUBJECT_WINDOW_DAYS; FLAG_BURST_COUNT requests from one insurer or API key within
# FLAG_BURST_WINDOW_MINUTES; FLAG_MISMATCH_COUNT identity mismatches from one API key, or from one insurer
# over all its keys, portal and batches, within FLAG_MISMATCH_WINDOW_HOURS.
FLAG_EVALUATE_SECONDS = env.float("FLAG_EVALUATE_SECONDS", default=300.0)
CELERY_BEAT_SCHEDULE["evaluate-misuse-flags"] = {
    "task": "underwriting.tasks.evaluate_flags",
    "schedule": FLAG_EVALUATE_SECONDS,
}
FLAG_SUBJECT_WINDOW_DAYS = env.int("FLAG_SUBJECT_WINDOW_DAYS", default=30)
FLAG_SUBJECT_MANUALS = env.int("FLAG_SUBJECT_MANUALS", default=3)
FLAG_SUBJECT_INSURERS = env.int("FLAG_SUBJECT_INSURERS", default=3)
FLAG_BURST_WINDOW_MINUTES = env.int("FLAG_BURST_WINDOW_MINUTES", default=10)
FLAG_BURST_COUNT = env.int("FLAG_BURST_COUNT", default=200)
FLAG_MISMATCH_WINDOW_HOURS = env.int("FLAG_MISMATCH_WINDOW_HOURS", default=24)
FLAG_MISMATCH_COUNT = env.int("FLAG_MISMATCH_COUNT", default=10)
# API throttles (DRF rate syntax), counted atomically in the shared cache: calls per API key, and per insurer
# over all its keys (insurer_portal/authentication.py). An insurer has at most API_MAX_ACTIVE_KEYS unrevoked keys.
API_THROTTLE_RATE = env.str("API_THROTTLE_RATE", default="600/min")
API_INSURER_THROTTLE_RATE = env.str("API_INSURER_THROTTLE_RATE", default="1200/min")
# Signed-form uploads (POST /api/v1/consent-artifacts), besides the limits above: each is stored, so a key
# or an insurer cannot fill the consent store (429 with Retry-After past either).
API_CONSENT_ARTIFACT_THROTTLE_RATE = env.str("API_CONSENT_ARTIFACT_THROTTLE_RATE", default="30/min")
API_INSURER_CONSENT_ARTIFACT_THROTTLE_RATE = env.str("API_INSURER_CONSENT_ARTIFACT_THROTTLE_RATE", default="2000/day")
API_MAX_ACTIVE_KEYS = env.int("API_MAX_ACTIVE_KEYS", default=5)
# Items in one POST /api/v1/underwriting-requests/batch (submitted in chunks of 200, one transaction each).
API_BATCH_MAX_ITEMS = env.int("API_BATCH_MAX_ITEMS", default=500)
# Requests per API key submitted through batch POSTs (each item counts one); keep it above API_BATCH_MAX_ITEMS.
API_BATCH_THROTTLE_RATE = env.str("API_BATCH_THROTTLE_RATE", default="6000/min")
API_INSURER_BATCH_THROTTLE_RATE = env.str("API_INSURER_BATCH_THROTTLE_RATE", default="12000/min")
# `GET /api/v1/underwriting-requests/{id}?wait=N` holds a server thread while it waits. At most this many
# waiters per web process (default: half of gunicorn's WEB_THREADS, so /healthz, /readyz and other calls
# always find a free thread) and per API key (across processes through Redis); a call beyond either bound
# is answered at once with the current status and the header "X-Wait: skipped" (poll again later).
_wait_per_process = env.str("API_WAIT_MAX_PER_PROCESS", default="")
API_WAIT_MAX_PER_PROCESS = (
    int(_wait_per_process) if _wait_per_process else max(1, env.int("WEB_THREADS", default=16) // 2)
)
API_WAIT_MAX_PER_KEY = env.int("API_WAIT_MAX_PER_KEY", default=4)

# --- logging -------------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# "json": one object per line with the request id (production); "plain": for reading in a terminal.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "ops.logging.RequestIdFilter"},
        "redact": {"()": "ops.logging.RedactPersonalData"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "ops.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Celery's per-task "succeeded ... <return value>" lines: task results are protocol messages
        # (e.g. the custodian's signs), not something for the log.
        "celery.app.trace": {"level": env.str("CELERY_TRACE_LOG_LEVEL", default="WARNING")},
        # And its "Task ... received" line per task: a formatted record on every hop of every request.
        "celery.worker.strategy": {"level": env.str("CELERY_TRACE_LOG_LEVEL", default="WARNING")},
    },
}

# --- Content-Security-Policy (django-csp, through ops.middleware.ContentSecurityPolicyMiddleware) -------
# Everything is served from this origin (vendored htmx, no CDN): no inline scripts, no framing, forms post
# only here. Inline style attributes are allowed for htmx's indicator styles. CONTENT_SECURITY_POLICY in
# the environment (a header value) replaces this policy on every page but the API documentation.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": csp_directives(env.str("CONTENT_SECURITY_POLICY", default=""))
    or {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# Swagger UI and ReDoc start with inline scripts and ReDoc runs a blob: worker; they hold no personal data.
# Everything else they load comes from this server (no CDN, no web fonts: templates/api/redoc.html).
CONTENT_SECURITY_POLICY_DOCS = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, UNSAFE_INLINE],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "worker-src": [SELF, "blob:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- metrics -------------------------------------------------------------------------------------
# /metrics (Prometheus). Set a token to require "Authorization: Bearer <token>" from the scraper.
METRICS_TOKEN = secret("METRICS_TOKEN", dev_default="")
# Without a token, /metrics answers 404 instead of opening: config.settings.production turns this on.
METRICS_REQUIRE_TOKEN = False

# --- demo ----------------------------------------------------------------------------------------
DEMO_ADMIN_USERNAME = env.str("DEMO_ADMIN_USERNAME", default="admin")
DEMO_ADMIN_PASSWORD = env.str("DEMO_ADMIN_PASSWORD", default="admin-demo-2026" if DEBUG else "")
