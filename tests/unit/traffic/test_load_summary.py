"""Locust's --json summary as the load generator reads it, with one process or a master and its workers."""

from __future__ import annotations

import json
from pathlib import Path

from harness.traffic.load import _parse_summary


def entry(requests: int, failures: int = 0) -> dict[str, object]:
    return {"name": "/", "num_requests": requests, "num_failures": failures, "start_time": 100.0,
            "last_request_timestamp": 110.0}


def test_one_process(tmp_path: Path) -> None:
    """One list: its totals, and the rate over its first to its last request."""
    path = tmp_path / "out.json"
    path.write_text(json.dumps([entry(1000, 3)]))
    assert _parse_summary(path) == (1000, 3, 100.0)


def test_workers_print_empty_lists_before_the_masters(tmp_path: Path) -> None:
    """Each forked worker prints its own list (empty: its stats went to the master); the master's counts."""
    path = tmp_path / "out.json"
    path.write_text("[]\n[]\n" + json.dumps([entry(1500, 1)], indent=4))
    assert _parse_summary(path) == (1500, 1, 150.0)


def test_log_lines_with_brackets_are_skipped(tmp_path: Path) -> None:
    """A log line's "[" is not the summary."""
    path = tmp_path / "out.json"
    path.write_text("[2026-12-01 10:00:00] warning\n" + json.dumps([entry(10)]))
    assert _parse_summary(path) == (10, 0, 1.0)


def test_no_summary(tmp_path: Path) -> None:
    """A load killed before printing, or no file: no summary, never an error."""
    path = tmp_path / "out.json"
    path.write_text("killed before printing")
    assert _parse_summary(path) is None
    assert _parse_summary(tmp_path / "missing.json") is None
