"""Benchmarks of mesh-harness: ``python -m bench [--quick] [--reps N] [--json FILE] [--check]``.

Speed and memory goals live here, never as timed assertions in tests. The machines that run this are
shared and noisy, so each figure is computed per repetition and reported as the median over repetitions
with its spread, and where a raw baseline exists (a bare Envoy's reload, a bare Locust, Envoy's own
``tcp_proxy``) it is measured in the same run, a moment apart. The figures: fault activation and rollback
as traffic sees them, the demo mesh's start-up, memory and scrape, the load generator's and the embedded
L4 proxy's cost, and the standard suites' wall time (see :mod:`bench.figures`).
"""

from __future__ import annotations

from bench.figures import FIGURE_KEYS, JSON_KEYS, assemble
from bench.report import Goal, Result, exit_code, format_table, format_value, to_json

__all__ = ["FIGURE_KEYS", "JSON_KEYS", "Goal", "Result", "assemble", "exit_code", "format_table", "format_value",
           "to_json"]
