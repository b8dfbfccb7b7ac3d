"""Where one request's CPU goes: the profile behind bench_pipeline's CPU per decision.

``python -m benchmarks.profile_pipeline [--layout merged|compose] [--rate 20] [--seconds 30]`` builds the
stack bench_pipeline (``merged``) or bench_capacity (``compose``) measures, on a scratch database, and runs
it twice:

1. **Statements.** A stack whose processes count their SQL statements (``benchmarks/querycount``, put on
   ``PYTHONPATH`` for this pass alone) answers requests one at a time; the table gives the statements
   per request of each process group, by shape (``SELECT underwriting_request``, ``INSERT audit_entry``).
2. **CPU.** A stack without the counting takes ``--rate`` requests/s for ``--seconds`` while ``py-spy``
   (``pip install py-spy``; without it this part prints CPU totals only) samples every process at 250 Hz.
   For each process group: CPU ms per request (from ``/proc``, as bench_pipeline measures it), the
   sampled time by the library running at the leaf of the stack (Django's ORM, psycopg2, Celery, the
   cryptography ...), and the project functions with the most time under them.

Needs PostgreSQL and Redis, as bench_pipeline does. Prints plain text; nothing is written into ``var/``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench_capacity import Roles, Scratch, compose_services, roles_drop, roles_make
from benchmarks.bench_pipeline import (
    Client,
    Service,
    _environment,
    _one,
    _prepare,
    _stack,
    cpu_meter,
    merged_services,
    open_loop,
)
from benchmarks.support import ROOT, drop_database, postgres_url, process_tree, scratch_database
from ops.db_zones import OWNER, ZONES

SAMPLE_HZ = 250
ROLES = Roles(f"profile_{os.getpid()}_", {zone: secrets.token_urlsafe(18) for zone in (*ZONES, OWNER)})
# The library a sample's leaf frame belongs to, by the first path fragment that matches (most specific first).
LIBRARIES = [
    ("gmpy2 / phe / securecompute arithmetic", ("gmpy2", "/phe/", "securecompute/")),
    ("psycopg2 (waiting on and talking to PostgreSQL)", ("psycopg2",)),
    ("Django ORM: building and compiling queries", ("django/db/models/",)),
    ("Django database layer (cursor, transactions)", ("django/db/",)),
    ("Django REST framework", ("rest_framework/",)),
    ("Django templates / i18n / utils", ("django/template", "django/utils/", "django/conf/")),
    ("Django request handling and middleware", ("django/core/handlers", "django/middleware", "django/contrib/",
                                                "django/http/", "django/urls/")),
    ("Django other", ("django/",)),
    ("Celery / kombu / billiard", ("celery/", "kombu/", "billiard/", "vine/", "amqp/")),
    ("redis client", ("redis/",)),
    ("gunicorn", ("gunicorn/",)),
    ("json", ("json/",)),
    ("logging", ("logging/",)),
    ("socket / selectors / ssl", ("socket.py", "selectors.py", "ssl.py", "threading.py", "queue.py")),
    ("project code", tuple(f"{name}/" for name in ("underwriting", "datadomain", "insurer_portal", "audit",
                                                    "config", "ops", "tenants", "residents"))),
]  # fmt: skip
PROJECT = LIBRARIES[-1][1]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_pipeline", description=__doc__)
    parser.add_argument("--layout", choices=("merged", "compose"), default="merged")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second in the CPU pass")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the CPU pass")
    parser.add_argument("--sequential", type=int, default=50, help="requests in the statement pass")
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--top", type=int, default=25, help="project functions listed per process group")
    parser.add_argument("--keep", type=Path, help="a folder that receives py-spy's raw samples")
    parser.add_argument("--passes", default="statements,cpu", help="statements, cpu or both (the default)")
    parser.add_argument("--no-samples", action="store_true", help="CPU totals only, without py-spy attached")
    options = parser.parse_args(argv)
    base_url, redis_url = postgres_url(), os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL", "")
    if not base_url or not redis_url:
        print("needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)", file=sys.stderr)
        return 2
    url = scratch_database(base_url, "profile_pipeline")
    try:
        with tempfile.TemporaryDirectory(prefix="profile-pipeline-") as name:
            folder = Path(name)
            env = _environment(url, redis_url, folder)
            people = _prepare(env, folder, options.patients)
            services = _layout(options.layout, env, folder, url)
            key = (folder / "demo-api-key.txt").read_text().strip()
            if "statements" in options.passes:
                _statements(options, env, folder, services, key, people)
            if "cpu" in options.passes:
                _cpu(options, env, services, key, people)
    finally:
        drop_database(base_url, url)
        if options.layout == "compose":
            roles_drop(base_url, ROLES)
    return 0


def _layout(layout: str, env: dict[str, str], folder: Path, url: str) -> Callable[[int], dict[str, Service]]:
    """The merged stack, or the compose layout's processes on this run's own trust-zone roles."""
    if layout == "merged":
        return merged_services
    roles_make(env, folder, ROLES)
    scratch = Scratch(url)
    try:
        return compose_services(env, ROLES, scratch.active_key_id(), folder)
    finally:
        scratch.close()


def _statements(
    options: argparse.Namespace, env: dict[str, str], folder: Path, services: Callable[[int], dict[str, Service]],
    key: str, people: list[dict[str, str]],
) -> None:  # fmt: skip
    log = folder / "statements"
    log.mkdir()
    counting = {**env, "BENCH_QUERY_LOG": str(log),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "benchmarks" / "querycount"),
                                                            env.get("PYTHONPATH")]))}  # fmt: skip
    pids: dict[str, int] = {}
    with _stack(counting, pids, services, name="statements") as port:
        client = Client(port, key)
        for index in range(10):
            _one(client, people[index % len(people)], f"PROFILE-WARM-{index}")
        time.sleep(1.0)
        before = _read_counts(log, pids)
        count = options.sequential
        outcomes = [_one(client, people[index % len(people)], f"PROFILE-SEQ-{index}") for index in range(count)]
        time.sleep(1.0)
        after = _read_counts(log, pids)
    done = sum(1 for outcome in outcomes if outcome.status == "completed")
    print(f"\n## SQL statements per request ({done} of {count} requests completed, one at a time)\n")
    total = 0.0
    for group in pids:
        spent = after[group] - before[group]
        per_request = sum(spent.values()) / max(count, 1)
        total += per_request
        print(f"{group}: {per_request:.1f} statements per request")
        for shape, number in spent.most_common():
            print(f"    {number / count:5.2f}  {shape}")
    print(f"all processes: {total:.1f} statements per request")


def _read_counts(log: Path, pids: dict[str, int]) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {group: Counter() for group in pids}
    for group, root in pids.items():
        for pid in process_tree(root):
            path = log / f"{pid}.json"
            if path.exists():
                counts[group].update(json.loads(path.read_text(encoding="utf-8")))
    return counts


def _cpu(
    options: argparse.Namespace, env: dict[str, str], services: Callable[[int], dict[str, Service]], key: str,
    people: list[dict[str, str]],
) -> None:  # fmt: skip
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    has_spy = Path(spy).exists() and not options.no_samples
    pids: dict[str, int] = {}
    samples_folder = tempfile.TemporaryDirectory(prefix="profile-samples-")
    with samples_folder as name, _stack(env, pids, services, name="cpu") as port:
        samples = Path(name)
        client = Client(port, key)
        for index in range(30):
            _one(client, people[index % len(people)], f"PROFILE-CPU-WARM-{index}")
        count = int(options.rate * options.seconds)
        recorders = []
        if has_spy:
            for group, pid in pids.items():
                command = [spy, "record", "--pid", str(pid), "--subprocesses", "--rate", str(SAMPLE_HZ),
                           "--format", "raw", "--nonblocking", "--output", str(samples / f"{group}.txt")]  # fmt: skip
                recorders.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(2.0)  # py-spy attaches
        meter = cpu_meter(pids)
        system = _system_seconds({}, pids)
        meter.start()
        outcomes, elapsed = open_loop(
            count, lambda index: _one(client, people[index % len(people)], f"PROFILE-CPU-{index}"), rate=options.rate
        )
        time.sleep(1.0)  # the last requests' webhooks and chaining
        meter.stop()
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            recorder.wait(timeout=60)
        done = sum(1 for outcome in outcomes if outcome.status == "completed")
        rate = f"{options.rate:g} requests/s over {elapsed:.0f} s"
        print(f"\n## CPU per request ({done} of {count} completed at {rate})\n")
        print(meter.per_request_ms(count))
        print(
            "of which in the kernel:",
            ", ".join(
                f"{group} {1000 * seconds / count:.1f}" for group, seconds in _system_seconds(system, pids).items()
            ),
        )
        if not has_spy:
            print("no samples (py-spy is not installed, or --no-samples)")
            return
        if options.keep:
            shutil.copytree(samples, options.keep, dirs_exist_ok=True)
        for group in pids:
            path = samples / f"{group}.txt"
            if path.exists():
                _summary(group, path.read_text(encoding="utf-8"), count, options.top)


def _system_seconds(before: dict[str, float], pids: dict[str, int]) -> dict[str, float]:
    """Kernel CPU seconds of each group's process tree, less ``before``."""
    spent = {}
    for group, root in pids.items():
        total = 0.0
        for pid in process_tree(root):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[12]) / os.sysconf("SC_CLK_TCK")
        spent[group] = total - before.get(group, 0.0)
    return spent


def _summary(group: str, raw: str, requests: int, top: int) -> None:
    by_library: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit():
            continue
        hits = int(number)
        total += hits
        frames = stack.split(";")
        by_library[_library(frames[-1])] += hits
        seen = set()
        for frame in frames:
            if any(part in frame for part in PROJECT) and frame not in seen:
                seen.add(frame)
                by_function[_short(frame)] += hits
    ms = 1000.0 / SAMPLE_HZ / max(requests, 1)
    print(f"\n### {group}: {total * ms:.1f} ms per request sampled on CPU\n")
    for library, hits in by_library.most_common():
        print(f"    {hits * ms:6.2f} ms  {100 * hits / max(total, 1):5.1f} %  {library}")
    print(f"  project functions, time under them (top {top}):")
    for function, hits in by_function.most_common(top):
        print(f"    {hits * ms:6.2f} ms  {function}")


def _library(frame: str) -> str:
    for label, fragments in LIBRARIES:
        if any(fragment in frame for fragment in fragments):
            return label
    return "other (" + _short(frame) + ")"


def _short(frame: str) -> str:
    """``function (path/to/file.py:12)`` -> ``function (file.py)``; lines vary within one function."""
    function, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    return f"{function} ({'/'.join(parts[-2:])})"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
