"""CSV files streamed from the admin (the regulator's export, a subject's access report)."""

from __future__ import annotations

import csv
from collections.abc import Iterable

from django.http import StreamingHttpResponse
from django.utils import timezone


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def csv_download(rows: Iterable[list[str]], *, name: str) -> StreamingHttpResponse:
    """Stream ``rows`` as ``<name>-<today>.csv`` (Asia/Shanghai date), one row at a time."""
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse((writer.writerow(row) for row in rows), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{name}-{timezone.localdate():%Y%m%d}.csv"'
    return response
