"""The data domain's Celery tasks (queue ``domain``): thin wrappers over services, so work that reads or
writes raw records runs under the domain's database role, never the web's."""

from __future__ import annotations

import logging
from typing import Any

from celery import signals
from django.conf import settings
from django.db import connections

from config.celery import task

logger = logging.getLogger(__name__)

# Queues whose tasks encrypt under the active key (the domain's tag material, the scoring side's tiering).
ENCRYPTING_QUEUES = ("domain", "scoring")


@signals.worker_init.connect
def encryptor_warm(sender: Any = None, **_: Any) -> None:
    """Build the active key's encryption tables in a domain or scoring worker's main process, before it
    forks its pool: every child starts with them (inherited, copy-on-write) instead of building its own on
    its first task (at 3072 bits, 11 MB and about 200 ms of CPU per child). Best effort: without a key or a
    database the children build them on first use, as before."""
    queues = getattr(getattr(getattr(sender, "app", None), "amqp", None), "queues", None)
    consumed = queues.consume_from if queues is not None else None
    if not consumed or not any(name in consumed for name in ENCRYPTING_QUEUES):
        return
    from datadomain import keyring
    from securecompute import fast_encryptor

    try:
        fast_encryptor(keyring.active_public_key()[1])
    except Exception as exc:  # noqa: BLE001  (start-up must go on; the tables are then built on first use)
        logger.warning(
            "encryption tables not built ahead (%s); each worker builds them on first use", type(exc).__name__
        )
    finally:
        connections.close_all()  # the pool's children must not inherit this process's connection


@task(name="datadomain.tasks.reprocess_quarantined", queue="domain", acks_late=True, ignore_result=True)
def reprocess_quarantined(line_ids: list[int]) -> int:
    """Ingest quarantined lines again after a correction in the admin; safe to run twice (an ingested
    line is left alone). Returns how many were ingested."""
    from datadomain.services import quarantine_reprocess

    return sum(quarantine_reprocess(quarantined_id=pk) for pk in line_ids)


@task(name="datadomain.tasks.mapping_apply", queue="domain", acks_late=True, ignore_result=True)
def mapping_apply(keys: list[tuple[str, str]]) -> int:
    """After approved mapping changes: stamp the records they map, so the affected subjects' vectors are
    recomputed (datadomain.mapping.apply). Safe to run twice."""
    from datadomain.mapping import apply

    return sum(apply(source, local_code) for source, local_code in keys)


@task(
    name="datadomain.tasks.resident_code_send",
    queue="domain",
    autoretry_for=(Exception,),
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=settings.SMS_GATEWAY_RETRIES,
    ignore_result=True,
)
def resident_code_send(code_id: str) -> bool:
    """Send a resident their sign-in code (reads the phone number: domain queue only). A retry draws a
    new code, so a message that did go out before a timeout simply stops working."""
    from datadomain.residents import resident_code_send as send

    return send(code_id=code_id)


@task(
    name="datadomain.tasks.residents_notify",
    queue="domain",
    autoretry_for=(Exception,),
    retry_backoff=True,
    max_retries=3,
    ignore_result=True,
)
def residents_notify(subject_keys: list[str]) -> int:
    """Tell residents that a request awaits their consent (domain queue: it reads their numbers)."""
    from datadomain.residents import residents_notify as notify

    return notify(subject_keys=subject_keys)
