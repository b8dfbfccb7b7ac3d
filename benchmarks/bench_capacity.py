"""Capacity: the highest offered rate at which p99 stays at or under 400 ms, found by a stepped search.

Two layouts, started from the same code, settings and database:

- ``merged``: the stack of ``bench_pipeline``: gunicorn (2 processes x WEB_THREADS threads), one Celery
  worker for ``domain``, ``scoring`` and ``webhooks`` (2 processes), the custodian alone (1 process), no
  beat; every process connects as the benchmark's own database user.
- ``compose``: the services of docker/compose.yaml as separate processes: ``web`` (gunicorn with
  docker/gunicorn.conf.py), ``worker-domain`` (``-Q domain -c 2``), ``worker-scoring`` (``-Q
  scoring,webhooks -c 2``), ``custodian`` (``-Q custodian -c 1``) and ``beat``, with the commands and log
  levels of the compose file (WORKER_CONCURRENCY overrides the 2, as in scripts/workers.sh). Each connects
  as its trust zone's own database role (``manage.py db_roles`` with roles of this run's own prefix; beat
  as scoring's), only the custodian gets the key-encryption key, only the domain worker the anchor
  signing key, and CUSTODIAN_KEY_ID pins the key, as docker/README.md says.

Two populations of synthetic residents (``charlson-acci``, 3072-bit key): ``precomputed``, whose encrypted
vectors were made in bulk beforehand (the steady state), and ``cold``, without a stored vector (the
request's extraction reads the records and encrypts). A cold subject is asked at most once per step and
the vectors its requests stored are deleted between steps, so a cold request stays cold. A search runs
one mix: ``mixed`` (every other request from each population), ``precomputed`` or ``cold``.

A step offers ``rate`` requests/s for ``hold`` seconds on an open-loop schedule (a slow answer does not
delay the next send). Each request is POST then GET ``?wait``; its latency runs from its scheduled send
time to reading the completed request, so a client that falls behind its schedule counts too. A step
holds when p99 <= 400 ms and every request completed. The search goes up the step list until a step does
not hold, then bisects between the last rate that held and that one until they are within the resolution;
the capacity is the highest rate that held. A mix is judged on all its requests; each population's p50
and p99 are reported beside, with the rate that held on that population's requests alone. After each step
the stack drains (no benchmark request unfinished, the queues empty, nothing unacknowledged) before the
next one starts, so steps do not pollute each other. CPU per request and process group (web, each worker
group, custodian, beat, this database's PostgreSQL backends, the client) is measured over a step and its
drain. Targets: capacity >= 20 requests/s, and the 20 requests/s step, when the search ran it, with p50
<= 100 ms, p99 <= 400 ms and no errors.

Options of ``python -m benchmarks.bench_capacity`` (``--help``); each has an environment variable for
``python -m benchmarks`` and ``make bench``, which an option given on the command line overrides:

  --layouts LIST       BENCH_CAPACITY_LAYOUTS       merged, compose (default: both, in that order)
  --populations LIST   BENCH_CAPACITY_POPULATIONS   mixed, precomputed, cold: one search each (default mixed)
  --rates LIST         BENCH_CAPACITY_RATES         steps in requests/s (default 10,15,20,25,30,35,40,50,60;
                                                    --quick 5,10,20)
  --hold SECONDS       BENCH_CAPACITY_HOLD          per step (default 60; --quick 5)
  --resolution RATE    BENCH_CAPACITY_RESOLUTION    bisect until the rates are this close; 0: no bisection
                                                    (default 2.5; --quick 0)
  --precomputed-subjects N   BENCH_CAPACITY_PRECOMPUTED_SUBJECTS   (default 1000; --quick 50)
  --cold-subjects N    BENCH_CAPACITY_COLD_SUBJECTS (default: enough for the largest step, at most 4,000)
  --json, --quick      as for ``python -m benchmarks``

For example ``python -m benchmarks.bench_capacity --layouts compose --populations cold --rates 15,20
--hold 30``, or ``BENCH_CAPACITY_LAYOUTS=merged python -m benchmarks --only bench_capacity --json``.

Needs PostgreSQL (BENCH_DATABASE_URL or DATABASE_URL, as a user who may create databases and roles) and
Redis (BENCH_REDIS_URL or REDIS_URL); without them the benchmark reports itself as skipped. The database
and the compose layout's roles are scratch ones, dropped at the end; BENCH_LOG_DIR keeps the processes'
logs (one folder per layout). The client's API key stands for many insurers' systems, so the per-key
limits (throttles, waiting calls, requests per subject) are lifted; the per-process cap on waiting calls
stays, and a wait it skips is asked again after its Retry-After, as any client does.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from benchmarks.bench_pipeline import (
    TERMINAL,
    WEB_THREADS,
    Client,
    Service,
    _environment,
    _one,
    _prepare,
    _stack,
    _stage_times,
    merged_services,
)
from benchmarks.capacity import (
    COLUMNS,
    MIXES,
    POPULATIONS,
    REUSED,
    TITLE,
    Options,
    Sample,
    Search,
    capacity_search,
    options_from,
    reports,
)
from benchmarks.report import Report, render
from benchmarks.support import admin_connection, drop_database, manage, postgres_url, process_tree, scratch_database
from ops.db_zones import OWNER, ZONES

WARM_UP_REQUESTS = 10
DRAIN_SECONDS = 300.0
WARM_UP_DRAIN_SECONDS = 120.0
QUEUES = ("domain", "scoring", "custodian", "webhooks")
# Not in flight on the stack: seed_demo's resident-confirmation demo request waits for its resident, not
# for a worker, and would keep the warm-up of a layout with beat from ever seeing the stack drained.
WAITING_ON_PEOPLE = ("awaiting_consent",)


# --- the real stack -------------------------------------------------------------------------------------


class Scratch:
    """The benchmark's own connection to its scratch database, as the administrator: to see what is in
    flight, to make cold subjects cold again and to find this database's backends."""

    def __init__(self, url: str) -> None:
        import psycopg2

        self.url = url
        self.connection = psycopg2.connect(url)
        self.connection.autocommit = True

    def rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, parameters)
            return list(cursor.fetchall())

    def pools(self) -> dict[str, list[tuple[int, dict[str, str]]]]:
        """Each population's subjects: (patient id, what the API takes), by whether a vector is stored."""
        found: dict[str, list[tuple[int, dict[str, str]]]] = {population: [] for population in POPULATIONS}
        for pk, resident_id, name, stored in self.rows(
            "SELECT p.id, p.resident_id, p.name, EXISTS (SELECT 1 FROM datadomain_encryptedfeaturevector v "
            "WHERE v.patient_id = p.id) FROM datadomain_patient p ORDER BY p.id"
        ):
            found["precomputed" if stored else "cold"].append((pk, {"resident_id": resident_id, "name": name}))
        return found

    def unfinished(self, references: str) -> int:
        """Requests whose reference is LIKE ``references`` and that are not terminal yet."""
        return int(
            self.rows(
                "SELECT count(*) FROM underwriting_underwritingrequest WHERE reference LIKE %s "
                "AND NOT status = ANY(%s)",
                [references, [*TERMINAL, *WAITING_ON_PEOPLE]],
            )[0][0]
        )

    def vectors_drop(self, patient_ids: Sequence[int]) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM datadomain_encryptedfeaturevector WHERE patient_id = ANY(%s)", [list(patient_ids)]
            )

    def backends(self) -> set[int]:
        """This database's PostgreSQL server processes (other databases' work on the server is not ours)."""
        return {int(pid) for (pid,) in self.rows("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")}

    def active_key_id(self) -> str:
        return str(self.rows("SELECT key_id FROM datadomain_custodiankey WHERE status = 'active'")[0][0])

    def close(self) -> None:
        self.connection.close()


@dataclass
class StackTarget:
    """A running stack behind the API on loopback, with its population of subjects."""

    layout: str
    client: Client
    pools: dict[str, list[tuple[int, dict[str, str]]]]
    scratch: Scratch
    redis: Any
    pids: dict[str, int]
    # With beat running, the sweeper resumes the demo requests seed_demo left queued (bench_pipeline's
    # preparation purges the queues): the warm-up waits for them too, so no step does their work.
    sweeper: bool = False
    serial: int = 0
    counters: dict[str, Any] = field(default_factory=dict)

    def begin(self, rate: float) -> str:
        self.serial += 1
        self.counters = {population: itertools.count() for population in self.pools}
        return f"CAP-{self.layout}-{self.serial}-"

    def send(self, index: int, population: str) -> Sample:
        pool = self.pools[population]
        ordinal = next(self.counters[population])  # itertools.count is atomic under the GIL
        label = REUSED if population == "cold" and ordinal >= len(pool) else population
        outcome = _one(self.client, pool[ordinal % len(pool)][1], f"CAP-{self.layout}-{self.serial}-{index}")
        return Sample(label, outcome.latency, outcome.status, outcome.error)

    def settle(self, references: str = "CAP-%", seconds: float = DRAIN_SECONDS) -> bool:
        deadline = time.monotonic() + seconds
        drained = self.idle(references)
        while not drained and time.monotonic() < deadline:
            time.sleep(0.25)
            drained = self.idle(references)
        self.scratch.vectors_drop([pk for pk, _ in self.pools.get("cold", [])])
        return drained

    def idle(self, references: str) -> bool:
        """No request LIKE ``references`` unfinished, nothing queued, nothing delivered but unacknowledged."""
        if self.scratch.unfinished(references):
            return False
        pipe = self.redis.pipeline()
        for queue in QUEUES:  # kombu's Redis transport keeps priorities 3, 6 and 9 in lists of their own
            for key in (queue, *(f"{queue}\x06\x16{priority}" for priority in (3, 6, 9))):
                pipe.llen(key)
        pipe.hlen("unacked")
        return not any(pipe.execute())

    def in_flight(self, references: str) -> str:
        """What keeps the stack from being idle: unfinished requests by status, queues with messages."""
        statuses = self.scratch.rows(
            "SELECT status, count(*) FROM underwriting_underwritingrequest WHERE reference LIKE %s "
            "AND NOT status = ANY(%s) GROUP BY status ORDER BY status",
            [references, [*TERMINAL, *WAITING_ON_PEOPLE]],
        )
        parts = [f"{count} {status}" for status, count in statuses]
        for queue in QUEUES:
            for key in (queue, *(f"{queue}\x06\x16{priority}" for priority in (3, 6, 9))):
                if length := self.redis.llen(key):
                    parts.append(f"{length} in {key.split(chr(6))[0]}")
        if unacked := self.redis.hlen("unacked"):
            parts.append(f"{unacked} delivered, unacknowledged")
        return ", ".join(parts) or "nothing"

    def cpu_groups(self) -> dict[str, Callable[[], set[int]]]:
        groups: dict[str, Callable[[], set[int]]] = {
            name: functools.partial(process_tree, pid) for name, pid in self.pids.items()
        }
        return {**groups, "postgres": self.scratch.backends, "client": lambda: {os.getpid()}}

    def warm_up(self, populations: Sequence[str]) -> bool:
        """A few requests one at a time (connections, caches, the encryptor's tables in every process),
        then a drain; none is measured. False when the stack did not drain."""
        self.begin(0)
        for index in range(WARM_UP_REQUESTS):
            self.send(index, populations[index % len(populations)])
        return self.settle("%" if self.sweeper else "CAP-%", seconds=WARM_UP_DRAIN_SECONDS)


@dataclass(frozen=True)
class Roles:
    """The trust zones' database roles on the scratch database (``manage.py db_roles``), this run's own."""

    prefix: str
    passwords: dict[str, str]

    def env(self, zone: str, database_url: str) -> dict[str, str | None]:
        parts = urlsplit(database_url)
        host = parts.hostname or "127.0.0.1"
        netloc = f"{quote(self.prefix + zone)}@{host}" + (f":{parts.port}" if parts.port else "")
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        return {"DATABASE_URL": url, "DATABASE_PASSWORD": self.passwords[zone]}


def roles_make(env: dict[str, str], folder: Path, roles: Roles) -> None:
    path = folder / "db-role-passwords"
    path.write_text("".join(f"{zone}={password}\n" for zone, password in roles.passwords.items()))
    path.chmod(0o600)
    manage(env, "db_roles", "--prefix", roles.prefix, "--password-file", str(path))


def roles_drop(base_url: str, roles: Roles) -> None:
    """Remove the roles from the cluster once their database is gone (they own nothing else)."""
    connection = admin_connection(base_url)
    try:
        with connection.cursor() as cursor:
            for zone in roles.passwords:
                cursor.execute(f'DROP ROLE IF EXISTS "{roles.prefix}{zone}"')
    finally:
        connection.close()


def compose_services(
    env: dict[str, str], roles: Roles, key_id: str, folder: Path
) -> Callable[[int], dict[str, Service]]:
    """docker/compose.yaml's services as processes on this machine (their commands, queues, concurrency,
    log levels, database roles and secrets)."""
    url, node = env["DATABASE_URL"], f"{os.getpid()}@bench"
    celery = [sys.executable, "-m", "celery", "-A", "config"]
    worker = [*celery, "worker", "--without-gossip", "--without-mingle", "--without-heartbeat"]  # as compose
    concurrency = os.environ.get("WORKER_CONCURRENCY", "2")

    def zone(name: str, **only_here: str) -> dict[str, str | None]:
        # Every container reads the same .env, where CUSTODIAN_KEK stays empty: a secret is given to the
        # one service that needs it.
        base: dict[str, str | None] = {
            "CUSTODIAN_KEY_ID": key_id,
            "CUSTODIAN_KEK": None,
            "AUDIT_ANCHOR_SIGNING_KEY": None,
        }
        return {**base, **roles.env(name, url), **only_here}

    def services(port: int) -> dict[str, Service]:
        return {
            "web": Service([sys.executable, "-m", "gunicorn", "--config", "docker/gunicorn.conf.py",
                            "--bind", f"127.0.0.1:{port}", "config.wsgi:application"],
                           {**zone("web"), "WEB_THREADS": WEB_THREADS}),
            "domain": Service([*worker, "-Q", "domain", "-n", f"domain-{node}", "-c", concurrency,
                               "-l", "INFO"], zone("domain", AUDIT_ANCHOR_SIGNING_KEY=env["AUDIT_ANCHOR_SIGNING_KEY"])),
            "scoring": Service([*worker, "-Q", "scoring,webhooks", "-n", f"scoring-{node}",
                                "-c", concurrency, "-l", "INFO"], zone("scoring")),
            "custodian": Service([*worker, "-Q", "custodian", "--include", "datadomain.custodian",
                                  "-n", f"custodian-{node}", "-c", "1", "-l", "INFO"],
                                 zone("custodian", CUSTODIAN_KEK=env["CUSTODIAN_KEK"])),
            # Beat only enqueues; compose gives it the scoring zone's role, the narrowest of the workers'.
            "beat": Service([*celery, "beat", "-l", "INFO", "--schedule", str(folder / "celerybeat-schedule")],
                            zone("scoring")),
        }  # fmt: skip

    return services


def run(options: argparse.Namespace) -> list[Report]:
    settings = options_from(options)
    base_url = postgres_url()
    redis_url = os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL", "")
    if not base_url or not redis_url:
        report = Report(name="bench_capacity", title=TITLE, columns=COLUMNS)
        report.notes.append("skipped: needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)")
        return [report]
    url = scratch_database(base_url, "bench_capacity")
    roles = Roles(f"bench_capacity_{os.getpid()}_", {zone: secrets.token_urlsafe(18) for zone in (*ZONES, OWNER)})
    searches: list[Search] = []
    notes: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-capacity-") as folder:
            env = _environment(url, redis_url, Path(folder))
            patients = settings.precomputed_subjects + settings.cold_subjects
            _prepare(env, Path(folder), patients, precompute=settings.precomputed_subjects)
            if "compose" in settings.layouts:
                roles_make(env, Path(folder), roles)
            scratch = Scratch(url)
            try:
                for layout in settings.layouts:
                    searches += _layout(layout, env, Path(folder), settings, scratch, roles, notes)
            finally:
                scratch.close()
    finally:
        drop_database(base_url, url)
        if "compose" in settings.layouts:
            roles_drop(base_url, roles)
    return reports(searches, settings, notes)


def _layout(
    layout: str, env: dict[str, str], folder: Path, settings: Options, scratch: Scratch, roles: Roles, notes: list[str]
) -> list[Search]:
    import redis

    pids: dict[str, int] = {}
    services = merged_services if layout == "merged" else compose_services(env, roles, scratch.active_key_id(), folder)
    pools = scratch.pools()
    populations = [p for p in POPULATIONS if any(p in MIXES[mix] for mix in settings.populations)]
    if missing := [population for population in populations if not pools[population]]:
        raise RuntimeError(f"no subjects in population(s) {', '.join(missing)}: did precompute_features run?")
    searches = []
    with _stack(env, pids, services, name=layout) as port:
        client = Client(port, (folder / "demo-api-key.txt").read_text().strip())
        broker = redis.Redis.from_url(env["REDIS_URL"])
        target = StackTarget(layout, client, pools, scratch, broker, pids, sweeper=layout == "compose")
        if not target.warm_up(populations):
            notes.append(
                f"{layout}: the stack had requests or tasks in flight {WARM_UP_DRAIN_SECONDS:.0f} s after the warm-up"
                f" ({target.in_flight('%' if target.sweeper else 'CAP-%')})"
            )
            log(notes[-1])
        for mix in settings.populations:
            log(f"bench_capacity: {layout} layout, {mix} population(s)")
            steps = capacity_search(
                target, settings.rates, settings.hold, MIXES[mix], resolution=settings.resolution, log=log
            )
            searches.append(Search(layout, mix, steps))
            notes.extend(_stage_notes(searches[-1], scratch.url))
        broker.close()
    return searches


def log(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def _stage_notes(search: Search, database_url: str) -> list[str]:
    """Where the time went at the capacity and at the first rate that did not hold."""
    capacity = search.capacity()
    steps = [search.step_at(capacity) if capacity is not None else None, search.first_failure()]
    return [
        _stage_times(database_url, f"{step.tag}%", label=f"{search.layout}, {search.mix}, {step.rate:g} req/s")
        for step in steps
        if step is not None
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_capacity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.add_argument("--quick", action="store_true", help="short steps and a small population, for a smoke run")
    parser.add_argument("--layouts", help="merged, compose (comma-separated)")
    parser.add_argument("--populations", help="mixed, precomputed, cold (comma-separated; one search each)")
    parser.add_argument("--rates", help="steps in requests/s (comma-separated)")
    parser.add_argument("--hold", help="seconds per step")
    parser.add_argument("--resolution", help="bisect until the rates are this close (0: no bisection)")
    parser.add_argument("--precomputed-subjects", dest="precomputed_subjects", help="residents with stored vectors")
    parser.add_argument(
        "--cold-subjects", dest="cold_subjects", help="residents without (default: enough for the largest step)"
    )
    namespace = parser.parse_args(argv)
    try:
        options_from(namespace)
    except ValueError as exc:
        parser.error(str(exc))
    print(render(run(namespace), as_json=namespace.json))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
