"""Structured logs: one JSON object per line, each carrying the request id of the HTTP request or task.

Log lines must never carry personal or clinical data. Call sites log ids and codes only; as a second
line of defence :class:`RedactPersonalData` masks anything shaped like a resident ID (GB 11643, 18
characters, or the older 15 digits) before a line is written, also when it arrives URL-encoded (once or
twice) or in full-width digits, and replaces the path of the request Django's own lines name ("Not
Found: /portal/...") by :func:`redact_path`'s version. Paths reach the logs only that way: every segment
that is not a word of the site's own URLs, a UUID or a short number is masked, since an ID or a name can
sit in any segment a client types; query strings never reach them, only their parameter names
(:func:`param_names`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import threading
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import unquote

from django.http import HttpRequest

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# 17 digits and a check character (digit or X), optionally grouped as region, birth date, sequence and
# check ("110105 19491231 002X"), or a first-generation 15-digit ID; not part of a longer alphanumeric run.
RESIDENT_ID = re.compile(r"(?<![0-9A-Za-z])(?:[1-9]\d{5}[ -]?\d{8}[ -]?\d{3}[0-9Xx]|[1-9]\d{14})(?![0-9A-Za-z])")
REDACTED = "[redacted]"
# LogRecord attributes that are not "extra" fields.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "request_id"}
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
_SHORT_NUMBER = re.compile(r"[0-9]{1,9}")  # database ids; a phone number (11) or an ID (15, 18) is longer
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
_EXTENSION = re.compile(r"[a-z0-9]{1,5}")
_ASSET = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,99}(?:\.[A-Za-z0-9_-]{1,20}){0,4}")


def decoded(text: str) -> str:
    """``text`` as a person would read it: URL-decoded until stable (a doubly encoded ``%2531`` too, at most
    three rounds) and NFKC-normalised, so full-width digits and letters read as their ASCII forms."""
    for _ in range(3):
        unquoted = unquote(text)
        if unquoted == text:
            break
        text = unquoted
    return unicodedata.normalize("NFKC", text)


def redact(text: str) -> str:
    """``text`` with resident IDs masked. When only its decoded form (:func:`decoded`) shows one, the decoded
    form is returned, masked: the encoded original would still carry the ID."""
    cleaned = RESIDENT_ID.sub(REDACTED, text)
    readable = decoded(cleaned)
    if readable != cleaned:
        masked = RESIDENT_ID.sub(REDACTED, readable)
        if masked != readable:
            return masked
    return cleaned


class _UrlWords:
    """The literal segments of the URLconf's patterns ("api", "underwriting-requests", "portal"...), read once."""

    def __init__(self) -> None:
        self._words: frozenset[str] | None = None
        self._lock = threading.Lock()

    def get(self) -> frozenset[str]:
        if self._words is None:
            with self._lock:
                if self._words is None:
                    try:
                        from django.urls import get_resolver

                        self._words = frozenset(_pattern_words(get_resolver().url_patterns))
                    except Exception:  # noqa: BLE001  # a log line must never fail for want of the URLconf
                        return frozenset()
        return self._words


def _pattern_words(patterns: Iterable[object]) -> Iterable[str]:
    for entry in patterns:
        pattern = str(getattr(entry, "pattern", ""))
        # Route syntax ("batches/<int:batch_id>/") and regular expressions ("^(?P<app_label>auth|ops)/$").
        yield from re.findall(r"[A-Za-z][A-Za-z0-9_-]*", re.sub(r"<[^>]*>", "/", pattern))
        yield from _pattern_words(getattr(entry, "url_patterns", ()))


_url_words = _UrlWords()


def _plain_segment(segment: str, *, asset: bool) -> bool:
    if segment == "" or _SHORT_NUMBER.fullmatch(segment) or _UUID.fullmatch(segment):
        return True
    if asset:
        return bool(_ASSET.fullmatch(segment)) and not re.search(r"[0-9]{6}", segment)
    # A word of the URLs, with a short extension at most ("results.xlsx", "template.csv").
    words = _url_words.get()
    first, *extensions = segment.split(".")
    return first in words and all(part in words or _EXTENSION.fullmatch(part) for part in extensions)


def redact_path(path: str, *, static_prefix: str = "/static/") -> str:
    """``path`` (no query string) with each segment masked that is not a word of the site's URLs, a UUID or
    a number of up to 9 digits, judged after decoding (:func:`decoded`). Under ``static_prefix`` plain
    file names are kept too."""
    readable = decoded(path.split("?", 1)[0])
    asset = readable.startswith(static_prefix)
    return "/".join(
        segment if _plain_segment(segment, asset=asset and index >= 1) else REDACTED
        for index, segment in enumerate(readable.split("/"))
    )


def param_names(query_string: str, *, limit: int = 50) -> list[str]:
    """The names of a raw query string's parameters for the log: sorted, without repeats, at most ``limit``
    of them read (the rest shown as "..."); a name that is not a short plain identifier (it could itself
    be a value) is masked. Parsed here, not through ``request.GET``, which raises on too many fields."""
    pairs = [pair for pair in query_string.split("&") if pair]
    names = {decoded(pair.split("=", 1)[0].replace("+", " ")) for pair in pairs[:limit]}
    shown = sorted({name if _PARAM_NAME.fullmatch(name) else REDACTED for name in names})
    return [*shown, "..."] if len(pairs) > limit else shown


def describe_request(request: HttpRequest) -> str:
    """``GET /api/v1/underwriting-requests/[redacted]``: what a log line may say about a request."""
    return f"{request.method} {redact_path(request.path)}"


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` from the current HTTP request or Celery task."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class RedactPersonalData(logging.Filter):
    """Masks resident-ID-shaped values in the formatted message (arguments included), and a request's path
    where Django's own lines ("Not Found: %s", "Forbidden (...): %s") put it in the arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = record.__dict__.get("request")
        if isinstance(request, HttpRequest) and isinstance(record.args, tuple):
            paths = {request.path, request.path_info, request.get_full_path()}
            record.args = tuple(
                redact_path(arg) if isinstance(arg, str) and arg in paths else arg for arg in record.args
            )
        elif record.name == "django.server" and isinstance(record.args, tuple) and record.args:
            # runserver's '"GET /path?query HTTP/1.1" 200 123'
            record.args = (_redact_request_line(str(record.args[0])), *record.args[1:])
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _redact_request_line(line: str) -> str:
    parts = line.split(" ")
    if len(parts) == 3:
        return f"{parts[0]} {redact_path(parts[1])} {parts[2]}"
    return REDACTED


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id", ...extra}``; exceptions as their type and trace."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id_var.get()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = _extra(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def _extra(value: object) -> object:
    if isinstance(value, int | float | bool | type(None)):
        return value
    if isinstance(value, HttpRequest):
        # Django attaches the request to its own lines; its repr holds the path and the query string.
        return describe_request(value)
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return [redact(item) for item in value]
    return redact(str(value))
