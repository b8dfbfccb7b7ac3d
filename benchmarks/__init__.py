"""Reproducible benchmarks. Each ``benchmarks/bench_*.py`` module defines ``run(options) -> Report``;
``python -m benchmarks`` (``make bench``) runs them and prints one table per report, or JSON."""
