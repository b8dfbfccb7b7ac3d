"""Server-side SVG charts: geometry computed here, drawn by the templates.

Plain SVG needs no JavaScript and no vendored library, prints well, and each chart carries a title, a
description and a table beside it for screen readers. The SVGs have no viewBox: bars are placed in
percent of the width and text is sized in CSS pixels, so labels stay readable at any width.
Used by the insurer portal's dashboard and by the bureau's admin (dashboard, misuse flags), so it lives
in the lowest layer that needs it and knows nothing of either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

# Colour-blind-safe palette (Okabe-Ito based), dark enough for 3:1 against white; tiers are ascending
# risk, so A is green and D red whatever mix a period happens to have.
TIER_COLOURS = ["#008060", "#0072B2", "#C45100", "#a40e26", "#8a6d00", "#56606b"]
# Series without an order of their own (insurers, flag kinds): the same palette, then greys.
SERIES_COLOURS = ["#0072B2", "#C45100", "#008060", "#a40e26", "#8a6d00", "#6a3d9a", "#56606b"]


def tier_colour(tier: str) -> str:
    index = ord(tier[0].upper()) - ord("A") if tier else -1
    return TIER_COLOURS[index] if 0 <= index < len(TIER_COLOURS) else TIER_COLOURS[-1]


def series_colour(index: int) -> str:
    return SERIES_COLOURS[min(index, len(SERIES_COLOURS) - 1)]


@dataclass(frozen=True)
class DayCount:
    day: date
    count: int


@dataclass(frozen=True)
class Bar:
    """A rectangle: ``x`` and ``width`` in percent of the plot's width, ``y`` and ``height`` in pixels.

    The charts are drawn without a viewBox, so nothing is scaled: text keeps its CSS size (12 px and up)
    on a phone as on a desktop, and only the bars' horizontal positions follow the width."""

    x: float
    y: float
    width: float
    height: float
    label: str
    value: int
    colour: str = "#0b5cad"


@dataclass(frozen=True)
class Chart:
    height: int  # pixels: the plot and the date labels under it
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # (x in percent, date label)
    max_value: int  # the top of the value axis: the first round value at or above the busiest day
    y_ticks: list[tuple[float, int]]  # (y in pixels, value): 0 and round steps up to max_value
    baseline: float  # y of the value 0, in pixels
    days: list[tuple[date, int]]  # every day and its total, for the table beside the chart
    total: int
    peak_day: tuple[date, int] | None  # the busiest day (the first of equals), None without any request


_TOP, _BOTTOM = 10, 26
MAX_Y_TICKS = 5


def nice_ticks(peak: int, *, most: int = MAX_Y_TICKS) -> list[int]:
    """0 and evenly spaced round values (steps of 1, 2 or 5 times a power of ten), at most ``most`` of them,
    up to the first at or above ``peak``: 14 gives 0, 5, 10, 15; 7 gives 0, 2, 4, 6, 8."""
    if peak <= 0:
        return [0, 1]
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if math.ceil(peak / step) + 1 <= most:
                return list(range(0, math.ceil(peak / step) * step + 1, step))
        magnitude *= 10


def volume_chart(days: list[DayCount], *, height: int = 200) -> Chart:
    """One bar per day."""
    chart, _ = stacked_day_chart([day.day for day in days], {"": [day.count for day in days]}, height=height)
    return chart


def stacked_day_chart(
    days: list[date], series: dict[str, list[int]], *, height: int = 200
) -> tuple[Chart, list[tuple[str, str]]]:
    """One stacked bar per day, a segment per series (``series[name][i]`` is the count on ``days[i]``).

    Returns the chart and the legend (series name, colour), in the order of ``series``."""
    colours = {name: series_colour(index) if name else "#0b5cad" for index, name in enumerate(series)}
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    y_values = nice_ticks(max(totals, default=0))
    top = y_values[-1]
    baseline = float(height - _BOTTOM)
    scale = (baseline - _TOP) / top
    slot = 100 / max(len(days), 1)
    bars = []
    for i, day in enumerate(days):
        base = baseline
        for name, values in series.items():
            if not values[i]:
                continue
            segment = values[i] * scale
            base -= segment
            bars.append(
                Bar(
                    x=round(i * slot + slot * 0.15, 2),
                    y=round(base, 1),
                    width=round(slot * 0.7, 2),
                    height=round(segment, 1),
                    label=f"{day.isoformat()} {name}".strip(),
                    value=values[i],
                    colour=colours[name],
                )
            )
    ticks = [(round(i * slot + slot / 2, 2), day.strftime("%m-%d")) for i, day in enumerate(days) if i % 5 == 0]
    peak = max(range(len(days)), key=lambda i: (totals[i], -i), default=None)
    chart = Chart(
        height=height,
        bars=bars,
        ticks=ticks,
        max_value=top,
        y_ticks=[(round(baseline - value * scale, 1), value) for value in y_values],
        baseline=baseline,
        days=list(zip(days, totals, strict=True)),
        total=sum(totals),
        peak_day=(days[peak], totals[peak]) if peak is not None and totals[peak] else None,
    )
    return chart, [(name, colour) for name, colour in colours.items() if name]


@dataclass(frozen=True)
class StackRow:
    label: str
    y: float  # baseline of the row's label, in pixels; the bar is drawn under it
    total: int
    segments: list[Bar]
    counts: list[int]  # per tier, in the legend's order (zero included), for the table beside the chart


MIX_ROW_HEIGHT = 48


def tier_mix_chart(
    mix: dict[str, dict[str, int]], *, row_height: int = MIX_ROW_HEIGHT
) -> tuple[list[StackRow], list[tuple[str, str]], int]:
    """One horizontal 100% bar per manual, its name above it (a name beside the bar would leave the bar no
    room on a phone); returns rows, the legend (tier, colour) and the SVG height in pixels."""
    tiers = sorted({tier for tiers in mix.values() for tier in tiers})
    colour = {tier: tier_colour(tier) for tier in tiers}
    rows = []
    for index, (manual, counts) in enumerate(mix.items()):
        total = sum(counts.values()) or 1
        top = index * row_height
        x = 0.0
        segments = []
        for tier in tiers:
            share = 100 * counts.get(tier, 0) / total
            if share:
                segments.append(
                    Bar(
                        x=round(x, 2),
                        y=top + 20,
                        width=round(share, 2),
                        height=row_height - 26,
                        label=tier,
                        value=counts[tier],
                        colour=colour[tier],
                    )
                )
            x += share
        counts_in_order = [counts.get(tier, 0) for tier in tiers]
        rows.append(StackRow(label=manual, y=top + 14, total=total, segments=segments, counts=counts_in_order))
    return rows, [(tier, colour[tier]) for tier in tiers], max(len(rows), 1) * row_height
