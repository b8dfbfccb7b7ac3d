"""Container health check of a Celery worker: exit 0 when this container's worker answers a ping."""

from __future__ import annotations

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    from config.celery import app

    host = socket.gethostname()
    replies = app.control.ping(timeout=5.0) or []
    return 0 if any(name.endswith(f"@{host}") for reply in replies for name in reply) else 1


if __name__ == "__main__":
    sys.exit(main())
