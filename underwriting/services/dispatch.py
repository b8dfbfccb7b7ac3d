"""Handing work to the broker once the database has committed it.

A committed row is the source of truth: if the broker cannot take the message (Redis restarting,
network blip), the step is not lost, only late. The sweeper (``requests_sweep``, ``webhooks_sweep``,
run by beat) finds rows that made no progress and enqueues them again. So a broker error here is
logged and swallowed instead of turning an accepted request into an HTTP error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


def enqueue(send: Callable[[], object], *, what: str) -> bool:
    """Run ``send`` (a ``.delay``/``.apply_async`` call); False when the broker is unavailable."""
    try:
        send()
    except (BrokerError, RedisError, ConnectionError) as exc:
        logger.warning("broker unavailable, %s is left to the sweeper (%s)", what, exc.__class__.__name__)
        return False
    return True


def enqueue_on_commit(send: Callable[[], object], *, what: str) -> None:
    transaction.on_commit(lambda: enqueue(send, what=what))
