from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.db import connection

from config.celery import app as celery_app
from tests.services import require_redis
from tests.webhook_receiver import Receiver, start_receiver
from tests.workers import WorkerPool


@pytest.fixture(scope="session", autouse=True)
def _flush_past_the_audit_truncate_guard() -> Iterator[None]:
    """Transactional tests end with Django's flush: one TRUNCATE of every table, which the audit log's
    trigger refuses (audit/models.py). Here, and only here, that flush runs inside pgtrigger's ignore for
    the TRUNCATE trigger (this thread, this transaction); every other statement of every test meets it."""
    import pgtrigger
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown

    def teardown(self: TransactionTestCase) -> None:
        with pgtrigger.ignore("audit.AuditEntry:audit_entry_no_truncate"):
            original(self)

    TransactionTestCase._fixture_teardown = teardown  # type: ignore[method-assign]
    yield
    TransactionTestCase._fixture_teardown = original  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def _worker_pool(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[WorkerPool]:
    require_redis()
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        database_name = str(connection.settings_dict["NAME"])
    pool = WorkerPool(database_name=database_name)
    pool.start()
    yield pool
    pool.stop()


@pytest.fixture
def celery_workers(transactional_db: None, _worker_pool: WorkerPool) -> Iterator[WorkerPool]:
    """Real worker processes on every queue, sharing the test database (hence transactional_db).

    At teardown it waits (bounded) for the requests the test left in progress to settle: the database is
    flushed next, and a TRUNCATE racing a worker's transaction over several tables can deadlock."""
    yield _worker_pool
    _wait_until_pipeline_idle(timeout=30.0)


def _wait_until_pipeline_idle(*, timeout: float) -> None:
    from underwriting.models import RequestStatus, UnderwritingRequest

    busy = [RequestStatus.EXTRACTING, RequestStatus.SCORING, RequestStatus.TIERING]
    deadline = time.monotonic() + timeout
    while UnderwritingRequest.objects.filter(status__in=busy).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.3)  # the last stage's transaction may still be committing its side tables


@pytest.fixture
def in_process_tasks() -> Iterator[None]:
    """Tasks (the custodian's included) run in this process even when REDIS_URL is set: for tests that
    need a task's effect but no worker processes."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = eager


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stage wake-ups are recorded instead of sent: requests wait in their stage until a test drains it."""
    from underwriting.services import dispatch, pipeline

    woken: list[str] = []
    for module in (dispatch, pipeline):
        monkeypatch.setattr(module, "stage_wake", lambda stage: woken.append(stage) or True)
    return woken


@pytest.fixture(autouse=True)
def _default_language() -> Iterator[None]:
    """Each test starts in the default language: a request with Accept-Language activates its language in
    the thread and leaves it there, so tests would otherwise depend on the one that ran before."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback that records what it was sent (tests/webhook_receiver.py)."""
    server = start_receiver()
    yield server
    server.stop()
