"""Celery tasks: thin wrappers that take ids, call one service and chain the next step.

Routing (config/settings/base.py): extract_features runs on ``domain`` (it reads raw records),
score/finalize on ``scoring`` (encrypted values only), the custodian's step on ``custodian``, webhook
work on ``webhooks``. Every task is safe to run twice: the services' transitions are guarded.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from django.conf import settings


class PipelineTask(Task):  # type: ignore[type-arg]
    """Retries with exponential backoff; after the last retry the request turns ``failed``."""

    autoretry_for = (Exception,)
    retry_backoff = True
    retry_backoff_max = 30
    retry_jitter = True
    max_retries = settings.UNDERWRITING_TASK_MAX_RETRIES

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        from underwriting.services.pipeline import request_fail

        request_id = kwargs.get("request_id") or (args[-1] if args else None)
        if request_id:
            request_fail(request_id=request_id)


@shared_task(base=PipelineTask, ignore_result=True)
def extract_features(request_id: str) -> None:
    from underwriting.services.pipeline import request_extract

    request_extract(request_id=request_id)


@shared_task(base=PipelineTask, ignore_result=True)
def score_request(request_id: str) -> None:
    from underwriting.services.pipeline import request_score

    request_score(request_id=request_id)


@shared_task(base=PipelineTask, ignore_result=True)
def finalize_request(answer: dict[str, Any], request_id: str) -> None:
    """Called with the custodian's answer as the first argument (a Celery ``link`` callback)."""
    from underwriting.services.pipeline import request_finalize

    request_finalize(request_id=request_id, answer=answer)


@shared_task(bind=True, ignore_result=True)
def deliver_webhook(self: Task[[int], None], delivery_id: int) -> None:
    from underwriting.services.webhooks import webhook_deliver

    delay = webhook_deliver(delivery_id=delivery_id)
    if delay is not None:
        deliver_webhook.apply_async(args=(delivery_id,), countdown=delay)


@shared_task(ignore_result=True)
def sweep_requests() -> int:
    """Re-enqueue requests whose task was lost (broker down at commit, worker killed)."""
    from underwriting.services.pipeline import requests_sweep
    from underwriting.services.webhooks import webhooks_sweep

    return requests_sweep() + webhooks_sweep()


@shared_task(ignore_result=True)
def evaluate_flags() -> int:
    """Raise misuse flags (oracle, burst, fishing) for new patterns of requests; safe to run twice."""
    from underwriting.services.flags import flags_evaluate

    report = flags_evaluate()
    return report.raised
