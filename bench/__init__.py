"""Benchmarks of mesh-harness: ``python -m bench [--quick] [--json FILE] [--check]``.

Speed and memory goals live here, never as timed assertions in tests: every number is a ratio against
a raw baseline measured in the same run, because the machines that run this are shared and noisy.
The benchmarks: mesh start-up vs one bare Envoy + one demo app, request path through the gateway vs
straight to an app, and the metric scraper's cost vs a bare admin GET (plus its CPU share).
"""

from __future__ import annotations

from bench.report import Goal, Result, exit_code, format_table, format_value, to_json

__all__ = ["Goal", "Result", "exit_code", "format_table", "format_value", "to_json"]
