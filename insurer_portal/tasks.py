"""Celery tasks of the portal: thin wrappers taking ids. Batches submit requests, which checks identities
in the data domain: the domain queue runs them."""

from __future__ import annotations

from config.celery import task


@task(name="insurer_portal.tasks.run_batch", queue="domain", ignore_result=True)
def run_batch(batch_id: int) -> None:
    """Submit a confirmed batch's rows; safe to run twice (each row has its own idempotency key)."""
    from insurer_portal.services import batch_run

    batch_run(batch_id=batch_id)


@task(name="insurer_portal.tasks.sweep_batches", queue="domain", ignore_result=True)
def sweep_batches() -> int:
    """Re-enqueue batches whose run was lost."""
    from insurer_portal.services import batches_sweep

    return batches_sweep()
