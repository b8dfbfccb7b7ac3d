"""The data domain's Celery tasks (queue ``domain``, CELERY_TASK_ROUTES): thin wrappers over services, so
work that reads or writes raw records runs under the domain's database role, never the web's."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="datadomain.tasks.reprocess_quarantined", acks_late=True, ignore_result=True)
def reprocess_quarantined(line_ids: list[int]) -> int:
    """Ingest quarantined lines again after a correction in the admin; safe to run twice (an ingested
    line is left alone). Returns how many were ingested."""
    from datadomain.services import quarantine_reprocess

    return sum(quarantine_reprocess(quarantined_id=pk) for pk in line_ids)
