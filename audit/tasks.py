"""Periodic audit jobs (CELERY_BEAT_SCHEDULE, domain queue): thin wrappers over the services."""

from __future__ import annotations

import logging
from typing import Any

from django.utils import translation

from audit import services
from config.celery import task

logger = logging.getLogger(__name__)


@task(name="audit.tasks.chain_pending", queue="domain", ignore_result=True)
def chain_pending() -> int:
    return services.audit_chain_pending()


@task(name="audit.tasks.export_anchor", queue="domain", ignore_result=True)
def export_anchor() -> str:
    return str(services.audit_anchor_export())


# A full walk of a long chain takes minutes: its own time limits, and acknowledged on receipt, since a
# read-only check lost with its worker simply runs again at the next beat (redelivery would run it twice).
@task(
    name="audit.tasks.verify_chain",
    queue="domain",
    ignore_result=True,
    acks_late=False,
    soft_time_limit=1800,
    time_limit=1900,
)
def verify_chain() -> dict[str, Any]:
    """Verify the chain and its anchors (read-only); a failure is logged as an error for the operators."""
    with translation.override(None):  # logs in English
        report = services.audit_chain_verify()
    summary = {"intact": report.intact, "checked": report.checked, "pending": report.pending, "anchors": report.anchors}
    if report.intact:
        logger.info("audit chain intact: %(checked)s entries, %(pending)s pending, %(anchors)s anchors", summary)
    else:
        logger.error("audit chain verification failed: %s", report.problem)
    return summary
