"""The stepped open-loop capacity search of ``bench_capacity``, independent of any stack: a step offers a
rate for a while and measures every request; the search steps up, then bisects; the report turns searches
into tables and targets. ``bench_capacity`` drives it against real processes, the tests against a fake."""

from __future__ import annotations

import argparse
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from benchmarks.bench_pipeline import WEB_THREADS, _percentile, open_loop
from benchmarks.report import Report
from benchmarks.support import CpuMeter

LIMIT_MS = 400.0  # a step holds when p99 stays at or under this, with no error
STEADY_RATE = 20.0  # the steady-load target's rate: p50 <= STEADY_P50_MS and p99 <= LIMIT_MS there
STEADY_P50_MS = 100.0
CAPACITY_TARGET = 20.0
POPULATIONS = ("precomputed", "cold")
REUSED = "cold, reused"  # a cold subject asked twice in one step: its second request found a stored vector
MIXES: dict[str, tuple[str, ...]] = {"mixed": POPULATIONS, "precomputed": ("precomputed",), "cold": ("cold",)}
LAYOUTS = ("merged", "compose")
DEFAULT_RATES = "10,15,20,25,30,35,40,50,60"
MAX_COLD_SUBJECTS = 4000
GROUP_ORDER = ("web", "main", "domain", "scoring", "custodian", "beat", "postgres", "client")
COLUMNS = ["layout", "mix", "offered req/s", "achieved req/s", "requests", "errors", "p50 ms", "p99 ms",
           "precomputed p50/p99 ms", "cold p50/p99 ms", "CPU ms/request", "p99 <= 400 ms"]  # fmt: skip


# --- the search, independent of any stack ------------------------------------------------------------


@dataclass
class Sample:
    """One request: its population, latency in seconds from its scheduled send, and how it ended."""

    population: str
    latency: float
    status: str
    error: str = ""

    @property
    def completed(self) -> bool:
        return self.status == "completed" and not self.error


@dataclass
class Step:
    """One rate held for ``hold`` seconds: every request's sample, and the CPU seconds of each process
    group over the step and its drain."""

    rate: float
    hold: float
    samples: list[Sample]
    elapsed: float
    cpu: dict[str, float] = field(default_factory=dict)
    drained: bool = True
    tag: str = ""

    def of(self, population: str | None = None) -> list[Sample]:
        return [sample for sample in self.samples if population is None or sample.population == population]

    def errors(self, population: str | None = None) -> int:
        return sum(1 for sample in self.of(population) if not sample.completed)

    def percentile(self, percent: float, population: str | None = None) -> float:
        """Latency percentile in ms over the completed requests (NaN when there are none)."""
        return _percentile(sorted(s.latency * 1000 for s in self.of(population) if s.completed), percent)

    def held(self, population: str | None = None, limit_ms: float = LIMIT_MS) -> bool:
        samples = self.of(population)
        return bool(samples) and self.errors(population) == 0 and self.percentile(99, population) <= limit_ms

    @property
    def achieved(self) -> float:
        """Completed requests per second, from the first scheduled send to the last answer."""
        return (len(self.samples) - self.errors()) / self.elapsed if self.elapsed > 0 else 0.0

    def cpu_ms_per_request(self) -> dict[str, float]:
        return {group: 1000 * seconds / max(len(self.samples), 1) for group, seconds in self.cpu.items()}


class Target(Protocol):
    """What the search drives: a stack, or a fake in the tests."""

    def begin(self, rate: float) -> str:
        """A step at ``rate`` starts; returns a tag naming its requests."""
        ...

    def send(self, index: int, population: str) -> Sample:
        """Request ``index`` of the step for a subject of ``population``; its latency from its own start."""
        ...

    def settle(self) -> bool:
        """Wait until nothing is in flight and make cold subjects cold again; False when it did not drain."""
        ...

    def cpu_groups(self) -> dict[str, Callable[[], set[int]]]: ...


def client_threads(rate: float) -> int:
    """Enough threads that the client keeps its schedule while the stack answers within a few seconds
    (in flight = rate x latency); a client that falls behind all the same is counted in the latencies."""
    return min(512, max(64, math.ceil(4 * rate)))


def measure_step(target: Target, rate: float, hold: float, mix: Sequence[str]) -> Step:
    """Offer ``rate`` requests/s for ``hold`` seconds, cycling through ``mix``, then let the stack drain."""
    count = max(1, round(rate * hold))
    tag = target.begin(rate)
    meter = CpuMeter(target.cpu_groups())
    meter.start()
    start = time.perf_counter()

    def send(index: int) -> Sample:
        late = max(0.0, time.perf_counter() - (start + index / rate))
        population = mix[index % len(mix)]
        try:
            sample = target.send(index, population)
        except Exception as exc:  # noqa: BLE001 - a failed request is an error of the step, never the end of the run
            return Sample(population, late, "error", exc.__class__.__name__)
        sample.latency += late
        return sample

    samples, elapsed = open_loop(count, send, rate=rate, threads=client_threads(rate))
    drained = target.settle()
    return Step(rate, hold, samples, elapsed, meter.stop(), drained, tag)


def capacity_search(
    target: Target,
    rates: Sequence[float],
    hold: float,
    mix: Sequence[str],
    *,
    resolution: float,
    limit_ms: float = LIMIT_MS,
    log: Callable[[str], None] = lambda line: None,
) -> list[Step]:
    """Steps up ``rates`` until one does not hold, then bisects between the last rate that held and that
    one while they are more than ``resolution`` apart (0: no bisection). The steps in the order run."""
    steps: list[Step] = []

    def holds(rate: float) -> bool:
        step = measure_step(target, rate, hold, mix)
        steps.append(step)
        log(describe(step, limit_ms))
        return step.held(None, limit_ms)

    held: float | None = None
    failed: float | None = None
    for rate in sorted(set(rates)):
        if not holds(rate):
            failed = rate
            break
        held = rate
    while held is not None and failed is not None and 0 < resolution < failed - held:
        middle = round((held + failed) / 2, 2)
        if middle in (held, failed):
            break
        if holds(middle):
            held = middle
        else:
            failed = middle
    return steps


def highest_held(steps: Sequence[Step], held: Callable[[Step], bool]) -> float | None:
    """The highest rate that held with every lower rate holding too (None: not even the lowest)."""
    best = None
    for step in sorted(steps, key=lambda step: step.rate):
        if not held(step):
            break
        best = step.rate
    return best


@dataclass
class Search:
    layout: str
    mix: str
    steps: list[Step]
    limit_ms: float = LIMIT_MS

    def capacity(self, population: str | None = None) -> float | None:
        return highest_held(self.steps, lambda step: step.held(population, self.limit_ms))

    def step_at(self, rate: float) -> Step | None:
        return next((step for step in self.steps if step.rate == rate), None)

    def first_failure(self) -> Step | None:
        failed = [step for step in self.steps if not step.held(None, self.limit_ms)]
        return min(failed, key=lambda step: step.rate) if failed else None


def describe(step: Step, limit_ms: float = LIMIT_MS) -> str:
    verdict = "held" if step.held(None, limit_ms) else "did not hold"
    return (
        f"{step.rate:g} req/s for {step.hold:g} s: achieved {step.achieved:.1f}, p50 {step.percentile(50):.0f} ms, "
        f"p99 {step.percentile(99):.0f} ms, {step.errors()} errors: {verdict}"
    )


# --- options ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    layouts: tuple[str, ...]
    populations: tuple[str, ...]
    rates: tuple[float, ...]
    hold: float
    resolution: float
    precomputed_subjects: int
    cold_subjects: int
    quick: bool


def options_from(namespace: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Options:
    """The search's settings: command-line options first, then BENCH_CAPACITY_* variables, then defaults
    (``--quick`` ones for a smoke run). Raises ValueError on a value that makes no sense."""
    quick = bool(getattr(namespace, "quick", False))

    def value(name: str, default: str) -> str:
        given = getattr(namespace, name, None)
        return str(given) if given is not None else environ.get(f"BENCH_CAPACITY_{name.upper()}", default)

    layouts = _names(value("layouts", ",".join(LAYOUTS)), LAYOUTS, "layouts")
    populations = _names(value("populations", "mixed"), tuple(MIXES), "populations")
    listed = value("rates", "5,10,20" if quick else DEFAULT_RATES).split(",")
    rates = tuple(sorted({_number(rate, "rates") for rate in listed if rate.strip()}))
    hold = _number(value("hold", "5" if quick else "60"), "hold")
    resolution = _number(value("resolution", "0" if quick else "2.5"), "resolution", zero=True)
    if not rates:
        raise ValueError("rates: give at least one rate in requests/s")
    precomputed = int(_number(value("precomputed_subjects", "50" if quick else "1000"), "precomputed subjects"))
    if precomputed < 1:
        raise ValueError("precomputed subjects: at least one (the demo's own requests use the first subjects)")
    share = max(MIXES[name].count("cold") / len(MIXES[name]) for name in populations)
    needed = min(MAX_COLD_SUBJECTS, math.ceil(max(rates) * hold * share))
    cold = int(_number(value("cold_subjects", str(needed)), "cold subjects", zero=True))
    if share and not cold:
        raise ValueError("cold subjects: a search of the cold population needs at least one")
    return Options(layouts, populations, rates, hold, resolution, precomputed, cold, quick)


def _names(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise ValueError(f"{what}: {', '.join(unknown) or 'none given'}; choose among {', '.join(allowed)}")
    return names


def _number(text: str, what: str, *, zero: bool = False) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        raise ValueError(f"{what}: {text!r} must be {'zero or more' if zero else 'more than zero'}")
    return number


# --- the report ----------------------------------------------------------------------------------------

TITLE = "Capacity: the highest offered rate with p99 <= 400 ms and no errors (stepped open-loop search, 2 cores)"


def reports(searches: Sequence[Search], settings: Options, notes: Sequence[str] = ()) -> list[Report]:
    """The steps table with the targets, and CPU per request and process group."""
    main = Report(name="bench_capacity", title=TITLE, columns=COLUMNS)
    groups = sorted({group for search in searches for step in search.steps for group in step.cpu}, key=_group_key)
    cpu = Report(
        name="bench_capacity_cpu",
        title="Capacity search: CPU ms per request and process group, over each step and its drain",
        columns=["layout", "mix", "offered req/s", "requests", *groups, "total"],
    )
    for search in searches:
        for step in sorted(search.steps, key=lambda step: step.rate):
            main.rows.append(_row(search, step))
            spent = step.cpu_ms_per_request()
            cpu.rows.append([search.layout, search.mix, _rate(step.rate), len(step.samples),
                             *(spent.get(group, "-") for group in groups), sum(spent.values())])  # fmt: skip
        _targets(main, search)
    main.notes.extend(notes)
    main.notes.extend(_setting_notes(settings))
    return [main, cpu]


def _rate(rate: float) -> float | int:
    """A whole rate as an integer, so the table reads 20 rather than 20.000."""
    return int(rate) if float(rate).is_integer() else rate


def _capacity_text(capacity: float | None) -> str:
    return "none (not even the lowest step)" if capacity is None else f"{capacity:g}"


def _group_key(group: str) -> tuple[int, str]:
    return (GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER), group)


def _row(search: Search, step: Step) -> list[Any]:
    def pair(population: str) -> str:
        if not step.of(population):
            return "-"
        return f"{step.percentile(50, population):.0f} / {step.percentile(99, population):.0f}"

    cpu_total = sum(step.cpu_ms_per_request().values())
    held = "yes" if step.held(None, search.limit_ms) else "no"
    return [search.layout, search.mix, _rate(step.rate), step.achieved, len(step.samples), step.errors(),
            step.percentile(50), step.percentile(99), pair("precomputed"), pair("cold"), cpu_total,
            held if step.drained else f"{held} (not drained)"]  # fmt: skip


def _targets(report: Report, search: Search) -> None:
    name = f"{search.layout} layout, {search.mix}"
    capacity = search.capacity()
    report.add_target(
        f"{name}: capacity, req/s at p99 <= {search.limit_ms:.0f} ms with no errors",
        capacity or 0.0,
        CAPACITY_TARGET,
        higher_is_better=True,
    )
    if len(MIXES.get(search.mix, ())) > 1:
        alone = [f"{population} {_capacity_text(search.capacity(population))}" for population in POPULATIONS]
        report.notes.append(
            f"{name}: the rate that held judged on one population's requests, req/s: {', '.join(alone)}"
        )
    steady = search.step_at(STEADY_RATE)
    if steady is None:
        report.notes.append(
            f"{name}: the search did not run {STEADY_RATE:g} req/s, so the steady-load targets are not measured"
        )
    else:
        label = f"{name}: steady {STEADY_RATE:g} req/s for {steady.hold:g} s"
        report.add_target(f"{label}, p50 ms", steady.percentile(50), STEADY_P50_MS, higher_is_better=False)
        report.add_target(f"{label}, p99 ms", steady.percentile(99), search.limit_ms, higher_is_better=False)
        report.add_target(f"{label}, errors", steady.errors(), 0, higher_is_better=False)
    report.notes.extend(_step_notes(name, search))


def _step_notes(name: str, search: Search) -> list[str]:
    """Why requests did not complete, and where the cold population ran short."""
    notes = []
    for step in search.steps:
        failures = Counter(f"{s.status} {s.error}".strip() for s in step.samples if not s.completed)
        if failures:
            kinds = ", ".join(f"{count} {kind}" for kind, count in failures.most_common(5))
            notes.append(f"{name}, {step.rate:g} req/s, not completed: {kinds}")
        if reused := len(step.of(REUSED)):
            notes.append(f"{name}, {step.rate:g} req/s: {reused} requests asked a cold subject twice (too few of them)")
    return notes


def _setting_notes(settings: Options) -> list[str]:
    notes = [
        f"steps {', '.join(f'{rate:g}' for rate in settings.rates)} req/s, {settings.hold:g} s each, then bisection "
        + (f"to {settings.resolution:g} req/s" if settings.resolution else "off")
        + "; each request POST then GET ?wait, latency from its scheduled send to reading it completed",
        f"population: {settings.precomputed_subjects:,} synthetic residents with precomputed charlson-acci vectors "
        f"and {settings.cold_subjects:,} without (their vectors deleted after each step); 3072-bit key",
        f"merged: gunicorn 2 x {WEB_THREADS} threads, one worker for domain+scoring+webhooks (2 processes), custodian "
        "(1), no beat; compose: gunicorn (docker/gunicorn.conf.py), worker-domain (2), worker-scoring (2), "
        "custodian (1) and beat, each as its zone's database role; all on one machine with the client",
        "CPU of PostgreSQL: this database's backends only (not the server's background writers)",
    ]
    if settings.quick:
        notes.append("quick run: short steps and a small population; the targets are defined on the full run")
    return notes
