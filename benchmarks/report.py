"""The shape every benchmark returns, and how it is printed."""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass
class Report:
    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)

    def add_target(self, description: str, measured: float, required: float, *, higher_is_better: bool) -> None:
        met = measured >= required if higher_is_better else measured <= required
        self.targets.append({"target": description, "measured": round(measured, 3), "required": required, "met": met})


def machine() -> dict[str, Any]:
    import os

    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        model = platform.processor()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cpu": model,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def format_table(report: Report) -> str:
    cells = [report.columns] + [[format_cell(value) for value in row] for row in report.rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(report.columns))]
    lines = [f"## {report.title}", ""]
    for index, row in enumerate(cells):
        lines.append(
            "| " + " | ".join(str(value).ljust(width) for value, width in zip(row, widths, strict=True)) + " |"
        )
        if index == 0:
            lines.append("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for target in report.targets:
        mark = "met" if target["met"] else "NOT MET"
        lines.append(
            f"- target: {target['target']}: measured {target['measured']}, required {target['required']}: {mark}"
        )
    lines.extend(f"- {note}" for note in report.notes)
    return "\n".join(lines)


def format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def to_json(reports: list[Report]) -> str:
    return json.dumps({"machine": machine(), "reports": [asdict(report) for report in reports]}, indent=2)


def render(reports: list[Report], *, as_json: bool) -> str:
    """What ``python -m benchmarks`` prints: one JSON document, or a header and one table per report."""
    if as_json:
        return to_json(reports)
    info = machine()
    header = f"# Benchmarks, {info['date']}: {info['cpu']}, {info['cores']} cores, Python {info['python']}\n"
    return header + "\n" + "\n\n".join(format_table(report) for report in reports)
