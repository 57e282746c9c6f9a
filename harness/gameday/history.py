"""A game day's history: one directory per run, read back as verdicts and key figures over time.

Each run is kept as ``HISTORY/runs/<UTC start>/`` with its ``results.json`` (SUITE-FORMAT §3) and its
``allure-results``; the run directories' names sort by time. Nothing else is needed to read the trend:
a run whose results are missing (killed before any experiment ended) shows as ``error``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RUNS", "RunSummary", "history_rows", "read_history", "summarize"]

RUNS = "runs"
VERDICT_ORDER = ("pass", "fail", "inconclusive", "aborted", "error")


@dataclass(frozen=True)
class RunSummary:
    """One run of a game day: its verdict and the figures that make a trend."""

    run: str
    """The run's directory name: its start, UTC (``2026-12-01T10-00-03Z``)."""
    verdict: str
    experiments: dict[str, str] = field(default_factory=dict)
    """``suite::experiment`` → verdict, in run order."""
    requests: int = 0
    duration_s: float = 0.0
    expectations: dict[str, int] = field(default_factory=dict)
    """Expectation verdict → how many."""
    error_exit: int = 0
    """The exit code an ``error`` experiment calls for (3: the mesh, 4: a bug); 0 when none erred."""

    @property
    def counts(self) -> dict[str, int]:
        """Experiment verdict → how many."""
        found = Counter(self.experiments.values())
        return {v: found[v] for v in VERDICT_ORDER if found[v]}

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"counts": self.counts}


def _suites(data: dict[str, Any]) -> list[dict[str, Any]]:
    suites = data.get("suites")
    return [s for s in suites if isinstance(s, dict)] if isinstance(suites, list) else [data]


def summarize(run: str, data: dict[str, Any]) -> RunSummary:
    """The summary of one run's results JSON (one suite's object, or ``{verdict, suites}``)."""
    experiments: dict[str, str] = {}
    expectations: Counter[str] = Counter()
    requests = 0
    duration = 0.0
    error_exit = 0
    for suite in _suites(data):
        for exp in suite.get("experiments") or []:
            if not isinstance(exp, dict):
                continue
            experiments[f"{suite.get('suite', '?')}::{exp.get('name', '?')}"] = str(exp.get("verdict", "error"))
            duration += float(exp.get("duration_s") or 0.0)
            requests += sum(int(p.get("requests") or 0) for p in (exp.get("phases") or {}).values()
                            if isinstance(p, dict))
            expectations.update(str(x.get("verdict")) for x in exp.get("expectations") or [] if isinstance(x, dict))
            if exp.get("verdict") == "error":
                code = exp.get("exit_code")
                error_exit = max(error_exit, code if isinstance(code, int) and code in (1, 3, 4) else 1)
    verdicts = set(experiments.values())
    verdict = "pass" if verdicts == {"pass"} else "error" if not verdicts else "fail"
    return RunSummary(run, verdict, experiments, requests, round(duration, 1),
                      {v: expectations[v] for v in VERDICT_ORDER if expectations[v]}, error_exit)


def read_history(history: Path) -> list[RunSummary]:
    """Every run kept under ``history``, oldest first."""
    runs = history / RUNS
    if not runs.is_dir():
        return []
    out = []
    for run in sorted(p for p in runs.iterdir() if p.is_dir()):
        try:
            data = json.loads((run / "results.json").read_text())
        except (OSError, ValueError):
            out.append(RunSummary(run.name, "error"))
            continue
        out.append(summarize(run.name, data) if isinstance(data, dict) else RunSummary(run.name, "error"))
    return out


def history_rows(runs: list[RunSummary]) -> tuple[list[str], list[list[str]]]:
    """A table of the trend: one row per run; a column per experiment seen in any run (``-``: not run)."""
    names = list(dict.fromkeys(name for r in runs for name in r.experiments))
    header = ["run", "verdict", "passed", "requests", "duration", *names]
    rows = []
    for r in runs:
        passed = f"{r.counts.get('pass', 0)}/{len(r.experiments)}"
        rows.append([r.run, r.verdict, passed, str(r.requests), f"{r.duration_s:.0f}s",
                     *(r.experiments.get(n, "-") for n in names)])
    return header, rows
