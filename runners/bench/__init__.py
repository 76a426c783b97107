"""Benchmarks: side-by-side ratios, with agreement checks, written as a report.

Run them with ``dimple-stats bench [--quick] [--out reports/benchmarks]``; see
:func:`runners.bench.suite.run_benchmarks`.
"""

from runners.bench.suite import BENCHMARKS, render_markdown, run_benchmarks

__all__ = ["BENCHMARKS", "render_markdown", "run_benchmarks"]
