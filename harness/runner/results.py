"""Results of a run, shaped exactly as SUITE-FORMAT §3's results JSON."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness._errors import InputError

if TYPE_CHECKING:  # only a type here: the verdict machinery (scipy) loads when verdicts are computed
    from harness.assertions.base import Outcome

__all__ = [
    "ExperimentCrashed", "ExperimentResult", "FaultRecord", "PhaseRecord", "StepRecord", "SuiteResult",
    "check_results_path",
    "exit_code", "write_results",
]

ExperimentVerdict = Literal["pass", "fail", "inconclusive", "aborted", "error"]


@dataclass
class PhaseRecord:
    start: float
    end: float
    requests: int
    window: tuple[float, float] | None = None


@dataclass
class FaultRecord:
    kind: str
    description: str
    applied_at: float
    removed_at: float | None = None
    activation_ms: float | None = None


@dataclass
class StepRecord:
    """One step of a traffic shift: the split asked for, when it held, and the client requests in its window."""

    step: int
    split: dict[str, float]
    start: float
    end: float
    requests: int


@dataclass
class ExperimentResult:
    name: str
    verdict: ExperimentVerdict = "error"
    duration_s: float = 0.0
    phases: dict[str, PhaseRecord] = field(default_factory=dict)
    faults: list[FaultRecord] = field(default_factory=list)
    expectations: list[Outcome] = field(default_factory=list)
    rollback_complete: bool = True
    rollback_actions: int = 0
    error: str | None = None
    aborted_by: str | None = None
    description: str = ""
    error_exit: int = 1
    """The exit code an ``error`` verdict calls for: 3 when the mesh could not be reached or changed."""
    steps: list[StepRecord] = field(default_factory=list)
    """The steps of a traffic shift, in order, as far as it went."""
    halted: dict[str, Any] | None = None
    """``{step, reason}`` when a shift with ``on_fail: halt`` stopped at a failing step."""
    timeline: list[dict[str, float]] = field(default_factory=list)
    """The client's view per second (``t`` from the experiment's start, requests, success, p50_ms, p99_ms):
    what the report's timeline picture draws (:func:`harness.runner.progress.timeline`)."""
    marks: list[dict[str, Any]] = field(default_factory=list)
    """Moments the picture marks beside the faults: each certificate stage as it was confirmed on every
    sidecar (``t`` from the experiment's start, ``label``), from the driver's stage log."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "verdict": self.verdict,
            "duration_s": round(self.duration_s, 3),
            "phases": {k: {"start": round(v.start, 3), "end": round(v.end, 3), "requests": v.requests}
                       for k, v in self.phases.items()},
            "faults": [{"kind": f.kind, "description": f.description, "applied_at": round(f.applied_at, 3),
                        "removed_at": None if f.removed_at is None else round(f.removed_at, 3),
                        "activation_ms": None if f.activation_ms is None else round(f.activation_ms, 2)}
                       for f in self.faults],
            "expectations": [o.to_json() for o in self.expectations],
            "rollback": {"complete": self.rollback_complete, "actions": self.rollback_actions},
        }
        if self.error:
            data["error"] = self.error
        if self.verdict == "error":
            # Which exit code the error calls for (3: the mesh; 4: a bug), for readers of the JSON alone,
            # such as a game day reading its child pytest's results.
            data["exit_code"] = self.error_exit
        if self.aborted_by:
            data["aborted_by"] = self.aborted_by
        if self.timeline:
            data["timeline"] = self.timeline
        if self.marks:
            data["marks"] = self.marks
        if self.steps:
            data["shift"] = {
                "steps": [{"step": st.step, "split": st.split, "start": round(st.start, 3), "end": round(st.end, 3),
                           "requests": st.requests} for st in self.steps],
                "halted": self.halted,
            }
        return data

    def failure_lines(self) -> list[str]:
        """What a user needs to read when the experiment did not pass: one line per problem."""
        lines = []
        if self.error:
            lines.append(f"error: {self.error}")
        if self.aborted_by:
            lines.append(f"aborted: {self.aborted_by}")
        if self.halted:
            lines.append(f"shift halted at step {self.halted['step']}: {self.halted['reason']}")
        lines += [f"{o.kind} {o.verdict}: {o.message}" for o in self.expectations if o.verdict != "pass"]
        if not self.rollback_complete:
            lines.append("rollback incomplete: run `mesh-harness cleanup`")
        return lines


@dataclass
class SuiteResult:
    suite: str
    environment: str
    started: str
    experiments: list[ExperimentResult] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "pass" if all(e.verdict == "pass" for e in self.experiments) else "fail"

    def to_json(self) -> dict[str, Any]:
        return {"suite": self.suite, "environment": self.environment, "started": self.started,
                "verdict": self.verdict, "experiments": [e.to_json() for e in self.experiments]}


class ExperimentCrashed(Exception):
    """A bug of ours stopped an experiment; raised after its rollback, carrying its partial result.

    Not a HarnessError on purpose: the CLI turns it into exit 4 and a crash report, never exit 1.
    """

    def __init__(self, result: ExperimentResult, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.result = result


def exit_code(results: list[SuiteResult]) -> int:
    """0 if every experiment passed; 3 if one could not reach or change the mesh; else 1."""
    experiments = [e for r in results for e in r.experiments]
    if all(e.verdict == "pass" for e in experiments):
        return 0
    return 3 if any(e.verdict == "error" and e.error_exit == 3 for e in experiments) else 1


def check_results_path(path: Path) -> None:
    """Refuse a results path that cannot be written, before anything starts.

    Why up front: the file is written after the last experiment, so a typo in ``--results`` would
    otherwise cost a whole run and lose its verdicts. Nothing is created: a scratch file is written and
    removed in the nearest directory that exists (missing ones are made when the results are written),
    which catches read-only mounts and permissions alike.
    """
    if path.is_dir():
        raise InputError(f"--results {path}: is a directory; give a file path such as {path / 'results.json'}")
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise InputError(f"--results {path}: {existing} is a file, not a directory; give a path in a directory")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"--results {path}: the file is not writable; give another path")
    try:
        fd, scratch = tempfile.mkstemp(prefix=".mesh-harness-", dir=existing or Path.cwd())
        os.close(fd)
        os.unlink(scratch)
    except OSError as exc:
        raise InputError(f"--results {path}: cannot write there ({exc.strerror or exc}); "
                         "give a path in a writable directory") from None


def write_results(path: Path, results: list[SuiteResult]) -> None:
    """The results JSON of SUITE-FORMAT §3: one suite's object, or ``{verdict, suites}`` for several."""
    data = results[0].to_json() if len(results) == 1 else {
        "verdict": "pass" if exit_code(results) == 0 else "fail", "suites": [r.to_json() for r in results]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
