"""Messages to residents' phones (one-time codes, consent notices), with pluggable backends chosen by
``RESIDENT_MESSAGE_BACKEND``, the way Django chooses an e-mail backend:

``console``
    Writes each message to the process's standard output (development: ``make run`` shows the demo's
    codes in the terminal of the worker that sends them, or of the development server when tasks run
    in-process).
``file``
    Appends each message to a file per day under ``RESIDENT_MESSAGE_DIR`` (``var/messages`` by default).
``locmem``
    Keeps messages in :data:`outbox` (tests).
``http``
    POSTs ``{"to": ..., "text": ...}`` as JSON to an SMS gateway (``SMS_GATEWAY_URL``) with the bearer
    token from ``SMS_GATEWAY_TOKEN`` or the file ``SMS_GATEWAY_TOKEN_FILE``, within
    ``SMS_GATEWAY_TIMEOUT`` seconds. A failure raises :class:`MessageError`; the domain's task retries
    it through Celery and records the outcome for bureau staff (``datadomain.MessageDelivery``).

Only the data domain sends: the number is read from the identity zone (``datadomain.PatientContact``) on
the domain queue, and neither the number nor the text is logged or stored anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from datadomain.messaging.backends import (
    BACKENDS,
    Backend,
    ConsoleBackend,
    FileBackend,
    HttpSmsBackend,
    LocmemBackend,
    MessageError,
    outbox,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "ConsoleBackend",
    "FileBackend",
    "HttpSmsBackend",
    "LocmemBackend",
    "Message",
    "MessageError",
    "backend_name",
    "get_backend",
    "outbox",
    "send_message",
]


@dataclass(frozen=True)
class Message:
    to: str
    text: str


def backend_name() -> str:
    return str(settings.RESIDENT_MESSAGE_BACKEND)


def get_backend(name: str | None = None) -> Backend:
    name = name or backend_name()
    try:
        return BACKENDS[name]()
    except KeyError:
        raise ImproperlyConfigured(
            f"RESIDENT_MESSAGE_BACKEND must be one of {', '.join(sorted(BACKENDS))}, not {name!r}"
        ) from None


def send_message(message: Message) -> None:
    """Send one message through the configured backend; raises MessageError when it did not go out."""
    get_backend().send(message.to, message.text)
