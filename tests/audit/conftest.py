from __future__ import annotations

from collections.abc import Iterator

import pytest

from config.celery import app as celery_app
from tests.governance.conftest import alice_decision  # noqa: F401 - a completed request about Alice
from tests.underwriting.conftest import (  # noqa: F401 - fixtures shared with the underwriting tests
    alice,
    api,
    approved_manuals,
    author,
    ingest,
    insurer,
    reviewer,
)


@pytest.fixture
def in_process_tasks() -> Iterator[None]:
    """Tasks run in this process even when REDIS_URL is set: these tests need no workers."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = eager
