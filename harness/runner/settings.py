"""An experiment's settings after the suite's defaults are applied: what actually runs."""

from __future__ import annotations

from dataclasses import dataclass

from harness.model.suite import AdaptivePhase, Experiment, LoadSettings, Phases, Suite

__all__ = ["DEFAULT_PHASES", "PhasePlan", "Resolved", "resolve_experiment"]

DEFAULT_PHASES = {"baseline": 5.0, "fault": 10.0, "recovery": 5.0}
DEFAULT_LOAD = LoadSettings(users=10, rate=100.0, path="/")


@dataclass(frozen=True)
class PhasePlan:
    name: str
    min_s: float
    max_s: float

    @property
    def adaptive(self) -> bool:
        return self.max_s > self.min_s


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

    @property
    def max_duration_s(self) -> float:
        return sum(p.max_s for p in self.phases)


def resolve_experiment(suite: Suite, exp: Experiment) -> Resolved:
    d = suite.spec.defaults
    load = DEFAULT_LOAD.merged(d.load).merged(exp.load)
    phases: Phases = d.phases.merged(exp.phases)
    plans = []
    for name in ("baseline", "fault", "recovery"):
        value = getattr(phases, name)
        if value is None:
            value = DEFAULT_PHASES[name]
        if isinstance(value, AdaptivePhase):
            plans.append(PhasePlan(name, value.min, value.max))
        else:
            plans.append(PhasePlan(name, float(value), float(value)))
    inconclusive = exp.inconclusive or suite.spec.inconclusive or d.inconclusive
    assert load.users is not None
    assert load.rate is not None
    assert load.path is not None
    return Resolved(
        experiment=exp, users=load.users, rate=load.rate, path=load.path, headers=dict(load.headers or {}),
        phases=tuple(plans), settle_s=exp.settle if exp.settle is not None else d.settle,
        confidence=exp.confidence or d.confidence, inconclusive_passes=inconclusive == "pass",
    )
