"""The lines of one NDJSON input file, plain or gzip, read with bounded memory whatever the file holds.

A damaged file does not stop the ingest. Reading ends at the break and every complete line before it is
read; the break is reported as a :class:`Rejected` entry with a reason (the partial line, if any, is the
entry's raw text). A line longer than ``max_line_bytes`` is rejected without ever being held whole: its
first bytes are kept and the rest is read past in chunks. A ``.gz`` file that is not gzip at all is
rejected as a whole (line 0), and so is a file that cannot be opened.

Reasons never quote anything from the file.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, cast

GZIP_MAGIC = b"\x1f\x8b"
READ_CHUNK = 1 << 20
HEAD_KEPT = 1000  # bytes of an over-long line kept in the quarantine, enough to recognise the resource

# Codes of the entries that end a file (the file as a whole at line 0, or the place where reading stopped).
BREAKS = {
    "not_gzip": "the file is named .gz but holds no gzip data: nothing in it was read",
    "truncated_file": "the compressed file ends before its end marker (cut short): the lines before this one "
    "were ingested, nothing after it could be read",
    "corrupt_file": "the compressed data is damaged here: the lines before this one were ingested, nothing "
    "after it could be read",
    "unreadable_file": "the file could not be read (a file-system error): the lines before this one were ingested",
}


@dataclass(frozen=True)
class Rejected:
    """A line refused while reading, or the place where a file broke (``number`` 0: the whole file)."""

    number: int
    code: str
    reason: str
    raw: bytes


def file_break(code: str, number: int, raw: bytes = b"") -> Rejected:
    return Rejected(number, code, BREAKS[code], raw)


class _Guarded(io.RawIOBase):
    """Reads ``inner`` and turns a read error into the end of the stream, remembering the error: whatever
    was decompressed before a break is still read, up to the break."""

    def __init__(self, inner: IO[bytes]) -> None:
        # One read of the layer below per call (read1): a buffered read(n) that meets an error part-way
        # drops what it had gathered, which would lose the lines just before a break.
        self.read_once = getattr(inner, "read1", inner.read)
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.error is not None:
            return 0
        try:
            data = self.read_once(len(buffer))
        except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            self.error = exc
            return 0
        buffer[: len(data)] = data
        return len(data)

    def break_code(self) -> str:
        if isinstance(self.error, EOFError):
            return "truncated_file"
        if isinstance(self.error, gzip.BadGzipFile | zlib.error):
            return "corrupt_file"
        return "unreadable_file"


class LineSource:
    """``with LineSource(path, max_line_bytes=...) as source: for item in source: ...`` yields
    ``(number, line)`` for every line (blank ones included, numbered from 1) and :class:`Rejected` for the
    lines refused while reading; a break is the last item. ``LineSource(...)`` raises ``OSError`` when the
    file cannot be opened at all."""

    def __init__(self, path: Path, *, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._raw = path.open("rb", buffering=0)
        inner: IO[bytes] = cast(IO[bytes], self._raw)
        self.not_gzip = False
        if path.name.endswith(".gz"):
            magic = self._raw.read(2)
            self._raw.seek(0)
            self.not_gzip = len(magic) == 2 and magic != GZIP_MAGIC
            inner = cast(IO[bytes], gzip.GzipFile(fileobj=self._raw, mode="rb"))
        self._inner = inner
        self._guarded = _Guarded(inner)
        self._stream = io.BufferedReader(self._guarded, READ_CHUNK)

    def __enter__(self) -> LineSource:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stream.close()
        self._inner.close()
        self._raw.close()

    def position(self) -> int:
        """Bytes of the file consumed so far (compressed bytes for a gzip file): the progress."""
        return int(self._raw.tell())

    def __iter__(self) -> Iterator[tuple[int, bytes] | Rejected]:
        if self.not_gzip:
            yield file_break("not_gzip", 0)
            return
        limit = self.max_line_bytes
        number = 0
        while line := self._stream.readline(limit + 1):  # the line and its newline, never more
            number += 1
            if line.endswith(b"\n"):
                yield number, line
            elif len(line) > limit:
                head = line[:HEAD_KEPT]
                del line
                if not self._skip_rest_of_line() and self._guarded.error is not None:
                    yield file_break(self._guarded.break_code(), number, head)
                    return
                yield Rejected(number, "line_too_long", _too_long(limit), head)
            elif self._guarded.error is not None:  # the last line, cut off by the break
                yield file_break(self._guarded.break_code(), number, line)
                return
            else:  # the last line of the file, without a newline
                yield number, line
        if self._guarded.error is not None:
            yield file_break(self._guarded.break_code(), number + 1)

    def _skip_rest_of_line(self) -> bool:
        """Read past the rest of an over-long line in chunks; False when the file ended first."""
        while chunk := self._stream.readline(READ_CHUNK):
            if chunk.endswith(b"\n"):
                return True
        return False


def _too_long(limit: int) -> str:
    return f"the line is longer than {limit} bytes (INGEST_MAX_LINE_BYTES): only its first {HEAD_KEPT} bytes are kept"
