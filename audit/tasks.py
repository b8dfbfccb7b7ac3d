"""Periodic audit jobs (CELERY_BEAT_SCHEDULE): thin wrappers over the services."""

from __future__ import annotations

from celery import shared_task

from audit import services


@shared_task(name="audit.tasks.chain_pending", ignore_result=True)
def chain_pending() -> int:
    return services.audit_chain_pending()


@shared_task(name="audit.tasks.export_anchor", ignore_result=True)
def export_anchor() -> str:
    return str(services.audit_anchor_export())
