"""The capacity search of benchmarks/bench_capacity.py, on a fake stack that answers at once.

The fake's latency depends only on the offered rate and the population, so these tests check the search's
logic (steps, bisection, attribution, targets) and never a wall-clock time; each step lasts a fraction of a
second.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from benchmarks.capacity import (
    MIXES,
    Options,
    Sample,
    Search,
    Step,
    capacity_search,
    highest_held,
    options_from,
    reports,
)
from benchmarks.report import to_json

HOLD = 0.2  # seconds per step: a handful of requests
FAST, SLOW = 0.05, 2.0  # seconds: far from the 400 ms limit on either side


@dataclass
class FakeStack:
    """Answers FAST up to a population's knee rate and SLOW above it; from ``errors_from`` on, every other
    request fails at once."""

    knees: dict[str, float]
    errors_from: float | None = None
    rate: float = 0.0
    begun: list[float] = field(default_factory=list)
    settled: int = 0

    def begin(self, rate: float) -> str:
        self.rate = rate
        self.begun.append(rate)
        return f"fake-{rate:g}-"

    def send(self, index: int, population: str) -> Sample:
        if self.errors_from is not None and self.rate >= self.errors_from and index % 2:
            return Sample(population, FAST, "http", "POST 500")
        return Sample(population, FAST if self.rate <= self.knees[population] else SLOW, "completed")

    def settle(self) -> bool:
        self.settled += 1
        return True

    def cpu_groups(self) -> dict[str, Callable[[], set[int]]]:
        return {}


def search(stack: FakeStack, rates: list[float], *, resolution: float = 0, mix: str = "precomputed") -> Search:
    return Search("fake", mix, capacity_search(stack, rates, HOLD, MIXES[mix], resolution=resolution))


def both(knee: float) -> dict[str, float]:
    return {"precomputed": knee, "cold": knee}


def test_steps_up_until_a_step_does_not_hold_then_bisects() -> None:
    stack = FakeStack(both(27))
    found = search(stack, [40, 10, 30, 20], resolution=2.5)
    assert stack.begun == [10, 20, 30, 25, 27.5]  # 40 never runs; 25 holds, 27.5 does not
    assert found.capacity() == 25
    assert found.first_failure() is found.step_at(27.5)


def test_without_resolution_the_search_stops_at_the_first_step_that_does_not_hold() -> None:
    stack = FakeStack(both(27))
    found = search(stack, [10, 20, 30, 40])
    assert stack.begun == [10, 20, 30]
    assert found.capacity() == 20


def test_the_stack_drains_after_every_step() -> None:
    stack = FakeStack(both(27))
    found = search(stack, [10, 20, 30], resolution=2.5)
    assert stack.settled == len(found.steps)


def test_every_request_of_a_step_is_sent_at_its_rate() -> None:
    found = search(FakeStack(both(100)), [10, 20])
    assert [len(step.samples) for step in found.steps] == [round(10 * HOLD), round(20 * HOLD)]


def test_errors_fail_a_step_however_fast_it_answered() -> None:
    found = search(FakeStack(both(100), errors_from=20), [10, 20, 30])
    failed = found.step_at(20)
    assert failed is not None
    assert failed.percentile(99) < 400
    assert failed.errors() == len(failed.samples) // 2
    assert not failed.held()
    assert found.capacity() == 10


def test_no_capacity_when_even_the_lowest_rate_does_not_hold() -> None:
    stack = FakeStack(both(5))
    found = search(stack, [10, 20], resolution=2.5)
    assert stack.begun == [10]  # nothing to bisect below the lowest step
    assert found.capacity() is None


def test_a_mix_is_judged_on_all_its_requests_and_each_population_reported() -> None:
    stack = FakeStack({"precomputed": 40, "cold": 15})
    found = search(stack, [10, 20, 30], mix="mixed")
    assert stack.begun == [10, 20]  # at 20 the cold half is slow: the mix does not hold
    step = found.step_at(20)
    assert step is not None
    assert len(step.of("precomputed")) == len(step.of("cold")) == len(step.samples) // 2
    assert step.percentile(99, "precomputed") == pytest.approx(FAST * 1000, abs=300)
    assert step.percentile(50, "cold") >= SLOW * 1000
    assert found.capacity() == 10
    assert found.capacity("precomputed") == 20
    assert found.capacity("cold") == 10


def test_the_capacity_needs_every_lower_rate_to_hold() -> None:
    def step(rate: float, latency: float) -> Step:
        return Step(rate, HOLD, [Sample("precomputed", latency, "completed")], elapsed=HOLD)

    steps = [step(10, FAST), step(15, SLOW), step(20, FAST)]
    assert highest_held(steps, lambda one: one.held()) == 10


def options(**given: object) -> Options:
    return options_from(argparse.Namespace(**given), environ={})


def test_report_has_the_capacity_and_steady_load_targets() -> None:
    found = search(FakeStack(both(27)), [10, 20, 30], resolution=2.5)
    main, cpu = reports([found], options(rates="10,20,30", hold=str(HOLD)))
    targets = {target["target"]: target for target in main.targets}
    capacity = targets["fake layout, precomputed: capacity, req/s at p99 <= 400 ms with no errors"]
    assert (capacity["measured"], capacity["met"]) == (25, True)
    steady = [target for name, target in targets.items() if "steady 20 req/s" in name]
    assert len(steady) == 3
    assert all(target["met"] for target in steady)
    assert [row[2] for row in main.rows] == [10, 20, 25, 27.5, 30]  # by rate, bisection steps among them
    assert cpu.columns[-1] == "total"
    json.loads(to_json([main, cpu]))


def test_report_says_when_the_steady_rate_was_not_reached() -> None:
    found = search(FakeStack(both(12)), [10, 15, 20])
    [main, _] = reports([found], options())
    capacity = main.targets[0]
    assert (capacity["measured"], capacity["met"]) == (10, False)
    assert any("did not run 20 req/s" in note for note in main.notes)


def test_options_come_from_the_command_line_then_the_environment_then_defaults() -> None:
    environ = {"BENCH_CAPACITY_RATES": "20, 10", "BENCH_CAPACITY_LAYOUTS": "compose", "BENCH_CAPACITY_HOLD": "30"}
    from_environment = options_from(argparse.Namespace(), environ=environ)
    assert from_environment.rates == (10.0, 20.0)
    assert from_environment.layouts == ("compose",)
    assert from_environment.populations == ("mixed",)
    assert from_environment.cold_subjects == 300  # 20 req/s x 30 s, every other request
    given = options_from(argparse.Namespace(rates="5", layouts=None, quick=True), environ=environ)
    assert (given.rates, given.layouts, given.hold, given.resolution) == ((5.0,), ("compose",), 30.0, 0.0)


def test_quick_defaults_are_short() -> None:
    quick = options(quick=True)
    assert quick.hold < 60
    assert quick.resolution == 0
    assert quick.layouts == ("merged", "compose")


@pytest.mark.parametrize(
    "given",
    [{"layouts": "merged,docker"}, {"populations": "warm"}, {"rates": "ten"}, {"rates": ","}, {"hold": "0"}],
)
def test_rejects_settings_that_make_no_sense(given: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        options(**given)
