"""Server-side SVG charts: geometry computed here, drawn by the templates.

Plain SVG needs no JavaScript and no vendored library, prints well, and each chart carries a text
table beside it for screen readers. Used by the insurer portal's dashboard and by the bureau's admin
(dashboard, misuse flags), so it lives in the lowest layer that needs it and knows nothing of either.
"""

from __future__ import annotations

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
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int
    colour: str = "#0b5cad"


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # (position, label)
    max_value: int


_TOP, _BOTTOM, _LEFT = 10, 24, 36


def volume_chart(days: list[DayCount], *, width: int = 720, height: int = 200) -> Chart:
    """One bar per day."""
    chart, _ = stacked_day_chart(
        [day.day for day in days], {"": [day.count for day in days]}, width=width, height=height
    )
    return chart


def stacked_day_chart(
    days: list[date], series: dict[str, list[int]], *, width: int = 720, height: int = 200
) -> tuple[Chart, list[tuple[str, str]]]:
    """One stacked bar per day, a segment per series (``series[name][i]`` is the count on ``days[i]``).

    Returns the chart and the legend (series name, colour), in the order of ``series``."""
    colours = {name: series_colour(index) if name else "#0b5cad" for index, name in enumerate(series)}
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    peak = max(totals, default=0) or 1
    slot = (width - _LEFT) / max(len(days), 1)
    scale = (height - _TOP - _BOTTOM) / peak
    bars = []
    for i, day in enumerate(days):
        base = float(height - _BOTTOM)
        for name, values in series.items():
            if not values[i] and len(series) > 1:
                continue
            segment = values[i] * scale
            base -= segment
            bars.append(
                Bar(
                    x=round(_LEFT + i * slot + slot * 0.15, 1),
                    y=round(base, 1),
                    width=round(slot * 0.7, 1),
                    height=round(segment, 1),
                    label=f"{day.isoformat()} {name}".strip(),
                    value=values[i],
                    colour=colours[name],
                )
            )
    ticks = [(round(_LEFT + i * slot + slot / 2, 1), day.strftime("%m-%d")) for i, day in enumerate(days) if i % 5 == 0]
    chart = Chart(width=width, height=height, bars=bars, ticks=ticks, max_value=peak)
    return chart, [(name, colour) for name, colour in colours.items() if name]


@dataclass(frozen=True)
class StackRow:
    label: str
    y: float
    total: int
    segments: list[Bar]


def tier_mix_chart(
    mix: dict[str, dict[str, int]], *, width: int = 720, row_height: int = 34
) -> tuple[list[StackRow], list[tuple[str, str]], int]:
    """One horizontal 100% bar per manual; returns rows, the legend (tier, colour) and the SVG height."""
    left, right = 150, 10
    tiers = sorted({tier for tiers in mix.values() for tier in tiers})
    colour = {tier: tier_colour(tier) for tier in tiers}
    rows = []
    for index, (manual, counts) in enumerate(mix.items()):
        total = sum(counts.values()) or 1
        x = float(left)
        segments = []
        for tier in tiers:
            share = (width - left - right) * counts.get(tier, 0) / total
            if share:
                segments.append(
                    Bar(
                        x=round(x, 1),
                        y=index * row_height + 4,
                        width=round(share, 1),
                        height=row_height - 10,
                        label=tier,
                        value=counts[tier],
                        colour=colour[tier],
                    )
                )
            x += share
        rows.append(StackRow(label=manual, y=index * row_height + row_height / 2 + 2, total=total, segments=segments))
    return rows, [(tier, colour[tier]) for tier in tiers], max(len(rows), 1) * row_height
