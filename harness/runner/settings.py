"""An experiment's settings after the suite's defaults are applied: what actually runs."""

from __future__ import annotations

from dataclasses import dataclass

from harness.model.suite import DEFAULT_PHASES, AdaptivePhase, Experiment, LoadSettings, Phases, Suite, TrafficShift

__all__ = ["DEFAULT_PHASES", "LOOK_GROWTH", "PhasePlan", "Resolved", "look_confidence", "resolve_experiment"]

DEFAULT_LOAD = LoadSettings(users=10, rate=100.0, path="/", workers=0)

LOOK_GROWTH = 1.25
"""An adaptive phase is judged when it has run ``min``, then each time it has run 25% longer (at least 1 s
later), and at ``max``. Geometric looks keep their number small (7 for 12s..40s), and each look must pay for
itself out of the suite's error budget (see ``look_confidence``); looking every second would spend it on
looks that add almost no evidence."""


def look_confidence(confidence: float, looks: int) -> float:
    """The confidence each of ``looks`` judgements is made at, so that the phase as a whole errs at most
    ``1 - confidence`` of the time.

    Why: an adaptive phase stops at the first look whose verdict is settled. Judged every time at the
    suite's confidence, a truth sitting near a bound would get a false pass or fail far more often than
    promised (optional stopping: measured by simulation in tests/unit/runner/test_adaptive_looks.py, 7 looks
    at 0.9 on a truth sitting on the bound err 26% of the time, not 10%; corrected, 5%). Splitting the error
    budget evenly over the looks fixed in advance (Bonferroni) bounds the whole sequence by the suite's
    confidence, whichever look stops it.
    """
    return 1.0 - (1.0 - confidence) / max(1, looks)


@dataclass(frozen=True)
class PhasePlan:
    name: str
    min_s: float
    max_s: float

    @property
    def adaptive(self) -> bool:
        return self.max_s > self.min_s

    @property
    def looks(self) -> tuple[float, ...]:
        """Times from the start of the phase at which it is judged; the last is always ``max_s``."""
        out: list[float] = []
        t = self.min_s
        while t < self.max_s - 1.0 + 1e-9:  # a look less than 1 s before max would add little but cost a share
            out.append(t)
            t = max(t * LOOK_GROWTH, t + 1.0)
        return (*out, self.max_s)


@dataclass(frozen=True)
class Resolved:
    experiment: Experiment
    users: int
    rate: float
    path: str
    headers: dict[str, str]
    phases: tuple[PhasePlan, ...]
    settle_s: float
    confidence: float
    inconclusive_passes: bool
    workers: int = 0
    """Locust worker processes (``load.workers``); 0: one process, no master."""
    remote_workers: int = 0
    """Workers started elsewhere that the master waits for (``load.remote_workers``)."""
    master_port: int = 0
    """The master's port (``load.master_port``); 0: any free one."""

    @property
    def max_duration_s(self) -> float:
        return sum(p.max_s for p in self.phases)

    def window_confidence(self) -> dict[str, float]:
        """Confidence of each adaptive phase's window (the others are judged at ``confidence``)."""
        return {p.name: look_confidence(self.confidence, len(p.looks)) for p in self.phases if p.adaptive}


def resolve_experiment(suite: Suite, exp: Experiment) -> Resolved:
    d = suite.spec.defaults
    load = DEFAULT_LOAD.merged(d.load).merged(exp.load)
    phases: Phases = d.phases.merged(exp.phases)
    plans = []
    for name in ("baseline", "fault", "recovery"):
        value = getattr(phases, name)
        if value is None:
            value = DEFAULT_PHASES[name]
        shift_s = max((f.total_hold for f in exp.faults if isinstance(f, TrafficShift)), default=0.0)
        if name == "fault" and shift_s:
            # A traffic shift moves through its steps in the fault phase: the phase lasts at least its
            # holds, and is not adaptive (every step is held for what it declares).
            longest = value.max if isinstance(value, AdaptivePhase) else float(value)
            plans.append(PhasePlan(name, max(longest, shift_s), max(longest, shift_s)))
        elif isinstance(value, AdaptivePhase):
            plans.append(PhasePlan(name, value.min, value.max))
        else:
            plans.append(PhasePlan(name, float(value), float(value)))
    inconclusive = exp.inconclusive or suite.spec.inconclusive or d.inconclusive
    assert load.users is not None
    assert load.rate is not None
    assert load.path is not None
    return Resolved(
        experiment=exp, users=load.users, rate=load.rate, path=load.path, headers=dict(load.headers or {}),
        workers=load.workers or 0, remote_workers=load.remote_workers or 0, master_port=load.master_port or 0,
        phases=tuple(plans), settle_s=exp.settle if exp.settle is not None else d.settle,
        confidence=exp.confidence or d.confidence, inconclusive_passes=inconclusive == "pass",
    )
