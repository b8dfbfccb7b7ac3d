"""The message backends (see :mod:`datadomain.messaging`)."""

from __future__ import annotations

import json
import os
import sys
import threading
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path
from typing import ClassVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class MessageError(Exception):
    """The message did not go out; ``str()`` says why, without the number or the text."""


class Backend:
    name: ClassVar[str] = ""

    def send(self, to: str, text: str) -> None:
        raise NotImplementedError


class ConsoleBackend(Backend):
    name = "console"

    def send(self, to: str, text: str) -> None:
        sys.stdout.write(f"[resident message to {to}] {text}\n")
        sys.stdout.flush()


class FileBackend(Backend):
    name = "file"

    def send(self, to: str, text: str) -> None:
        folder = Path(settings.RESIDENT_MESSAGE_DIR)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"{date.today().isoformat()}.log"
        line = json.dumps({"to": to, "text": text}, ensure_ascii=False) + "\n"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as stream:
            stream.write(line)


# Messages sent through the locmem backend, oldest first: (to, text).
outbox: list[tuple[str, str]] = []
_outbox_lock = threading.Lock()


class LocmemBackend(Backend):
    name = "locmem"

    def send(self, to: str, text: str) -> None:
        with _outbox_lock:
            outbox.append((to, text))


def _gateway_token() -> str:
    path = str(settings.SMS_GATEWAY_TOKEN_FILE)
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"SMS_GATEWAY_TOKEN_FILE cannot be read ({exc.strerror})") from None
    return str(settings.SMS_GATEWAY_TOKEN)


class HttpSmsBackend(Backend):
    """An SMS gateway over HTTPS: one JSON POST per message; any answer but 2xx is a failure."""

    name = "http"

    def send(self, to: str, text: str) -> None:
        url = str(settings.SMS_GATEWAY_URL)
        if not url.startswith(("https://", "http://")):
            raise ImproperlyConfigured("SMS_GATEWAY_URL must be an https:// (or http://) URL")
        body = json.dumps({"to": to, "text": text}, ensure_ascii=False).encode()
        request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 (scheme checked above)
        request.add_header("Content-Type", "application/json")
        token = _gateway_token()
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(  # noqa: S310  # nosec B310 - the bureau's own gateway, scheme checked
                request, timeout=float(settings.SMS_GATEWAY_TIMEOUT)
            ) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            raise MessageError(f"gateway answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MessageError(f"gateway unreachable ({reason.__class__.__name__})") from None
        if not 200 <= status < 300:
            raise MessageError(f"gateway answered HTTP {status}")


BACKENDS: dict[str, type[Backend]] = {
    backend.name: backend for backend in (ConsoleBackend, FileBackend, LocmemBackend, HttpSmsBackend)
}
