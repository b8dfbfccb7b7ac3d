from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

from tests.services import require_redis
from tests.workers import WorkerPool


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
def celery_workers(transactional_db: None, _worker_pool: WorkerPool) -> WorkerPool:
    """Real worker processes on every queue, sharing the test database (hence transactional_db)."""
    return _worker_pool
