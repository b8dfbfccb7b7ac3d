"""The Celery application. Configuration lives in Django settings under the ``CELERY_`` prefix."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = Celery("underwriting_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fixup closes every database connection before and after each task unless this is
# set, which costs a new PostgreSQL connection (several ms) per task. Connections are recycled below
# instead, the way Django does it per HTTP request: CONN_MAX_AGE and health checks decide.
app.conf.update({"CELERY_DB_REUSE_MAX": 1_000_000})
app.autodiscover_tasks()


@signals.task_prerun.connect
@signals.task_postrun.connect
def _recycle_database_connections(**kwargs: Any) -> None:
    if getattr(kwargs.get("task"), "request", None) is not None and kwargs["task"].request.is_eager:
        return  # in-process: the caller's connection and transaction, leave them alone
    from django.db import close_old_connections

    close_old_connections()
