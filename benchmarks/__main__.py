"""Run the benchmarks: ``python -m benchmarks [--json] [--quick] [--only NAME ...]``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

from benchmarks.report import Report, render


def discover() -> list[str]:
    folder = Path(__file__).resolve().parent
    return sorted(info.name for info in pkgutil.iter_modules([str(folder)]) if info.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, for a smoke run")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark module names (e.g. bench_paillier)")
    options = parser.parse_args(argv)

    names = [name for name in discover() if not options.only or name in options.only]
    if not names:
        parser.error(f"no benchmark matches {options.only}; available: {', '.join(discover())}")
    reports: list[Report] = []
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"running {name} ...", file=sys.stderr)
        result = module.run(options)  # one report, or several tables of one benchmark
        reports.extend(result if isinstance(result, list) else [result])
    print(render(reports, as_json=options.json))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
