"""Celery tasks: thin wrappers that take ids, call one service and chain the next step.

Each task names its queue: drain_extraction runs on ``domain`` (it reads raw records),
drain_scoring/finalize_requests on ``scoring`` (encrypted values only), the custodian's step on
``custodian``, webhook work on ``webhooks``. Every task is safe to run twice: the services'
transitions are guarded, and a stage's drain claims its requests under row locks. Services send these
tasks by name (config.celery.enqueue); they never import this module.
"""

from __future__ import annotations

from typing import Any

from celery import Task
from django.conf import settings

from config.celery import enqueue, task


class StageTask(Task):  # type: ignore[type-arg]
    """A stage's drain: retried with exponential backoff; its requests stay in their status meanwhile, and
    the sweeper turns them ``failed`` after UNDERWRITING_MAX_ATTEMPTS if the stage never recovers."""

    autoretry_for = (Exception,)
    retry_backoff = True
    retry_backoff_max = 30
    retry_jitter = True
    max_retries = settings.UNDERWRITING_TASK_MAX_RETRIES


class FinalizeTask(StageTask):
    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        from underwriting.services.pipeline import request_fail

        answers = kwargs.get("answers") or (args[0] if args else {})
        for request_id in answers:
            request_fail(request_id=request_id)


@task(name="underwriting.tasks.drain_extraction", queue="domain", base=StageTask, ignore_result=True)
def drain_extraction() -> int:
    """Extract the encrypted vectors of every request waiting in ``extracting`` (domain queue)."""
    from underwriting.services.pipeline import stage_drain

    return stage_drain("extract")


@task(name="underwriting.tasks.drain_scoring", queue="scoring", base=StageTask, ignore_result=True)
def drain_scoring() -> int:
    """Score every request waiting in ``scoring`` and send the custodian their queries (scoring queue)."""
    from underwriting.services.pipeline import stage_drain

    return stage_drain("score")


@task(name="underwriting.tasks.finalize_requests", queue="scoring", base=FinalizeTask, ignore_result=True)
def finalize_requests(answers: dict[str, dict[str, Any]]) -> int:
    """Called with the custodian's answers as the first argument (a Celery ``link`` callback)."""
    from underwriting.services.pipeline import requests_finalize

    return requests_finalize(answers=answers)


@task(name="underwriting.tasks.deliver_webhook", queue="webhooks", bind=True, ignore_result=True)
def deliver_webhook(self: Task[[int], None], delivery_id: int) -> None:
    from underwriting.services.webhooks import webhook_deliver

    delay = webhook_deliver(delivery_id=delivery_id)
    if delay is not None:  # a broker that cannot take the retry leaves it to webhooks_sweep
        enqueue(self.name, delivery_id, countdown=delay, what="webhook retry")


@task(name="underwriting.tasks.sweep_requests", queue="scoring", ignore_result=True)
def sweep_requests() -> int:
    """Re-enqueue requests whose task was lost (broker down at commit, worker killed) and reject requests
    whose resident did not confirm in time (``consent_expired``)."""
    from underwriting.services.confirmations import confirmations_expire
    from underwriting.services.pipeline import requests_sweep
    from underwriting.services.webhooks import webhooks_sweep

    return requests_sweep() + webhooks_sweep() + confirmations_expire()


# Misuse flags watch the scoring workers (custodian.misuse entries), so they are not evaluated there.
@task(name="underwriting.tasks.evaluate_flags", queue="domain", ignore_result=True)
def evaluate_flags() -> int:
    """Raise misuse flags (oracle, burst, fishing) for new patterns of requests; safe to run twice."""
    from underwriting.services.flags import flags_evaluate

    report = flags_evaluate()
    return report.raised


@task(name="underwriting.tasks.explain_subject", queue="domain", ignore_result=False, acks_late=False)
def explain_subject(approval_id: int, executed_by_id: int) -> dict[str, Any]:
    """Carry out an approved explanation in the data domain (queue ``domain``: it recomputes features from
    raw records, which only the domain's database role reads) and hand it back to the admin that waits for
    it. Not retried: the approval is spent once. A refusal comes back as ``{"error": message}``."""
    from django.contrib.auth import get_user_model

    from audit.approvals import ApprovalError
    from underwriting.errors import UnderwritingError
    from underwriting.services.explain import explanation_execute

    officer = get_user_model().objects.get(pk=executed_by_id)
    try:
        return {"explanation": explanation_execute(approval_id=approval_id, executed_by=officer).as_dict()}
    except (UnderwritingError, ApprovalError) as exc:
        return {"error": exc.message}
