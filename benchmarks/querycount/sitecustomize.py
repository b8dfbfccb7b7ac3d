"""Counts the SQL statements each process of a profiled stack runs (``benchmarks.profile_pipeline``).

Put on ``PYTHONPATH`` only by the profiler, with ``BENCH_QUERY_LOG`` naming a folder: every Django database
connection then gets an execute wrapper that counts statements by their first words and table, and writes
the counts to ``<folder>/<pid>.json`` after each one (the counting stack is not the one whose CPU is
measured). Statements are counted by shape, never with their values.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from typing import Any

_FOLDER = os.environ.get("BENCH_QUERY_LOG")
_SHAPE = re.compile(r'^\s*(SELECT|INSERT INTO|UPDATE|DELETE FROM|SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO|\w+)'
                    r'(?:.*?\bFROM\s+"?(\w+)"?)?', re.IGNORECASE | re.DOTALL)  # fmt: skip
_TABLE = re.compile(r'^\s*(?:INSERT INTO|UPDATE|DELETE FROM)\s+"?(\w+)"?', re.IGNORECASE)


def _install() -> None:
    from django.db.backends.signals import connection_created

    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def flush() -> None:
        path = os.path.join(_FOLDER or ".", f"{os.getpid()}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as out:
            json.dump(dict(counts), out)
        os.replace(path + ".tmp", path)

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        text = str(sql)
        table = _TABLE.match(text)
        shape = _SHAPE.match(text)
        if table:
            key = f"{text.split(maxsplit=1)[0].upper()} {table.group(1)}"
        elif shape:
            key = f"{shape.group(1).upper()} {shape.group(2) or ''}".strip()
        else:
            key = text[:30]
        if "FOR UPDATE" in text.upper():
            key += " FOR UPDATE"
        with lock:
            counts[key] += 1
            flush()
        return execute(sql, params, many, context)

    def attach(sender: Any, connection: Any, **kwargs: Any) -> None:
        if wrapper not in connection.execute_wrappers:  # the wrapper object outlives a reconnection
            connection.execute_wrappers.append(wrapper)

    connection_created.connect(attach, weak=False)


if _FOLDER:
    _install()
