"""Settings for the test suite: the base settings with test-only defaults.

Everything the environment sets (DATABASE_URL, REDIS_URL in CI) still applies.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Tests never write into the developer's var/ (its demo API key, keys, database): every path derived from
# VAR_DIR goes to a directory of this test run's own, removed at exit. Processes the tests start (Celery
# workers, commands) inherit it through the environment, so they share it.
if "VAR_DIR" not in os.environ:
    os.environ["VAR_DIR"] = tempfile.mkdtemp(prefix="underwriting-test-var-")
    atexit.register(shutil.rmtree, os.environ["VAR_DIR"], True)

os.environ.setdefault("SECRET_KEY", "test-secret-key")
os.environ.setdefault("SUBJECT_PEPPER", "test-subject-pepper")
os.environ.setdefault("PAILLIER_KEY_BITS", "2048")
os.environ.setdefault("CUSTODIAN_KEK", "7e57" * 16)
os.environ.setdefault("AUDIT_KEY", "test-audit-key")
# The tests' webhook receivers listen on 127.0.0.1 (tests/webhook_receiver.py): an allowed on-premise receiver
# here and in the workers the tests start. tests/security/test_attack_webhooks.py empties the list.
os.environ.setdefault("WEBHOOK_ALLOWED_PRIVATE_HOSTS", "127.0.0.1")

from config.settings.base import *  # noqa: F403
from config.settings.base import CACHES, DATABASES, VAR_DIR

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed; never in production
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
WHITENOISE_AUTOREFRESH = True  # no collectstatic before tests
CUSTODIAN_KEY_DIR = VAR_DIR / "test-keys"
# Signs the tests' audit anchors. Set here rather than in os.environ, which the production-settings tests
# hand to the processes they start.
AUDIT_ANCHOR_SIGNING_KEY = "7e5a" * 16
# A fault test's workers keep their connections between tasks, as deployed (tests/faults/conftest.py).
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("TEST_WORKER_CONN_MAX_AGE", "0"))
# Residents' codes and notices stay in memory (datadomain.messaging.outbox) unless a test says otherwise.
RESIDENT_MESSAGE_BACKEND = os.environ.get("RESIDENT_MESSAGE_BACKEND", "locmem")
# Counters in a shared Redis (sign-in lock-out, API throttles) belong to this run: failures counted by an
# earlier run within PORTAL_LOCKOUT_SECONDS never lock this one out. Processes it starts share VAR_DIR.
CACHES["default"]["KEY_PREFIX"] = VAR_DIR.name

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so that worker processes started by the tests can open it too; one per
    # test run, so that two runs side by side do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}

# Worker processes started by tests/conftest.py connect straight to the test database, each as its trust
# zone's database role when TEST_WORKER_DATABASE_USER names one (tests/workers.py).
if os.environ.get("TEST_WORKER_DATABASE_NAME"):
    DATABASES["default"]["NAME"] = os.environ["TEST_WORKER_DATABASE_NAME"]
if os.environ.get("TEST_WORKER_DATABASE_USER"):
    DATABASES["default"]["USER"] = os.environ["TEST_WORKER_DATABASE_USER"]
    DATABASES["default"]["PASSWORD"] = os.environ.get("TEST_WORKER_DATABASE_PASSWORD", "")
