"""The Suite document: experiments, each a fault under load with expectations (SUITE-FORMAT §2).

Every kind in the contract's tables is modelled, so any document written to the contract loads; what a
given mesh driver cannot do yet is refused later, at plan time, with a message naming the experiment.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from harness.model.common import Edge, Located, Metadata, Name, Percent, Problems, Strict, Target
from harness.model.durations import Duration, format_compound, nonzero, parse_duration
from harness.model.environment import CircuitBreaker, OutlierDetection, Retries

__all__ = [
    "DEFAULT_PHASES",
    "MAX_EXPERIMENT_S",
    "AbortCondition",
    "AdaptivePhase",
    "Defaults",
    "Expectation",
    "Experiment",
    "Fault",
    "LoadSettings",
    "Phases",
    "PolicyChange",
    "Suite",
    "SuiteSpec",
    "Window",
]

Window = Literal["baseline", "fault", "recovery", "all"]

PHASE_NAMES = ("baseline", "fault", "recovery")

DEFAULT_PHASES = {"baseline": 5.0, "fault": 10.0, "recovery": 5.0}
"""Built-in phase lengths (s), used where neither the experiment nor the suite's defaults give one.

Here rather than in the runner because validation needs them too: a phase is judged (zero, too long)
after the same merge the runner does (``harness.runner.settings.resolve_experiment``)."""

LOAD_MARGIN_S = 60.0
"""The runner asks the load generator for the experiment's longest run plus this margin (time to start
the load, apply policy and faults, and scrape), see ``harness.runner.experiment``."""

MAX_EXPERIMENT_S = 3600.0 - LOAD_MARGIN_S
"""The longest one experiment may run: baseline + fault + recovery, each at its ``max``, 59 minutes.

The load generator refuses a run longer than an hour (``harness.traffic.load.MAX_DURATION_S``); with the
runner's margin, the phases get 3540 s. A suite asking for more is refused at validation, naming the
phase to shorten, rather than failing halfway through a run after earlier experiments have run."""


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP header name (RFC 9110 token), as the load generator requires."""


class LoadSettings(Strict):
    """Open-ish load: ``users`` concurrent Locust users sharing a constant total ``rate`` (req/s)."""

    users: int | None = Field(default=None, ge=1, le=1000)
    rate: float | None = Field(default=None, gt=0, le=20000)
    path: str | None = Field(default=None, pattern=r"^/")
    headers: dict[str, str] | None = None
    workers: int | None = Field(default=None, ge=0, le=32)
    remote_workers: int | None = Field(default=None, ge=0, le=32)
    master_port: int | None = Field(default=None, ge=1024, le=65535)

    @model_validator(mode="after")
    def _users_per_worker(self) -> LoadSettings:
        workers = (self.workers or 0) + (self.remote_workers or 0)
        if workers and self.users is not None and self.users < workers:
            raise Located(f"{self.users} users cannot keep {workers} workers busy (Locust gives each worker "
                          f"whole users): write users: {workers} or more, or fewer workers", "workers")
        if self.remote_workers and self.master_port is None:
            raise Located("remote workers connect to the master at a port fixed in advance: write master_port, "
                          "e.g. master_port: 5557", "remote_workers")
        return self

    @field_validator("path")
    @classmethod
    def _path_syntax(cls, value: str | None) -> str | None:
        if value is not None and any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in value):
            raise ValueError(f"the path {value!r} holds a space or control character: percent-encode it "
                             "(a space is %20)")
        return value

    @field_validator("headers")
    @classmethod
    def _header_syntax(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        """The load generator's own rules (``harness.traffic.load.LoadSpec``), checked here so that a bad
        header is refused at validation, not when the load starts after policies were applied."""
        for name, text in (value or {}).items():
            if not _HEADER_NAME.fullmatch(name):
                raise Located(f"'{name}' is not an HTTP header name: use letters, digits and - (e.g. x-team)", name)
            if any(c in text for c in "\r\n\0"):
                raise Located(f"the value of header {name} holds a line break or NUL: write it on one line", name)
        return value

    def merged(self, other: LoadSettings | None) -> LoadSettings:
        """Field-wise override: an experiment's ``load`` refines the suite's default, not replaces it."""
        if other is None:
            return self
        return self.model_copy(update={k: v for k, v in other if v is not None})


class AdaptivePhase(Strict):
    """A phase that ends once every expectation on it has a settled verdict, or at ``max``."""

    min: Duration
    max: Duration

    @model_validator(mode="after")
    def _ordered(self) -> AdaptivePhase:
        if self.min <= 0:
            # The first look is at min: a look at 0s judges an empty window and spends a share of the
            # suite's error budget on it.
            raise Located("an adaptive phase's min must be longer than 0s: write the shortest length worth "
                          "judging, e.g. min: 5s", "min")
        if self.max < self.min:
            raise Located(f"max must not be shorter than min: write max: {format_compound(self.min)} or longer", "max")
        return self


PhaseLength = Duration | AdaptivePhase


class Phases(Strict):
    baseline: PhaseLength | None = None
    fault: PhaseLength | None = None
    recovery: PhaseLength | None = None

    def merged(self, other: Phases | None) -> Phases:
        if other is None:
            return self
        return self.model_copy(update={k: v for k, v in other if v is not None})


class Defaults(Strict):
    load: LoadSettings = Field(default_factory=LoadSettings)
    phases: Phases = Field(default_factory=Phases)
    confidence: float = Field(default=0.99, gt=0.5, lt=1.0)
    settle: Duration = 1.0
    inconclusive: Literal["fail", "pass"] = "fail"


class PolicyChange(Strict):
    """A temporary policy on one edge for one experiment: applied before baseline, restored after."""

    from_: Name = Field(alias="from")
    to: Name
    retries: Retries | None = None
    timeout: Duration | None = None
    circuit_breaker: CircuitBreaker | None = None
    outlier_detection: OutlierDetection | None = None


# ---------------------------------------------------------------------------------------------- faults
class _FaultBase(Strict):
    id: str | None = Field(default=None, description="optional label used in results and plans")


class HttpAbort(_FaultBase):
    kind: Literal["http-abort"]
    target: Target
    status: int = Field(default=503, ge=200, le=599)
    percent: Percent
    headers: dict[str, str] | None = None
    at: Literal["target", "caller"] = "target"


class HttpDelay(_FaultBase):
    kind: Literal["http-delay"]
    target: Target
    delay: Annotated[Duration, nonzero(
        "a delay of 0s holds nothing back: write e.g. delay: 100ms, "
        "or remove the fault")]
    percent: Percent
    headers: dict[str, str] | None = None
    at: Literal["target", "caller"] = "target"


class NetLatency(_FaultBase):
    kind: Literal["net-latency"]
    edge: Edge
    latency: Annotated[Duration, nonzero(
        "a latency of 0s adds nothing: write e.g. latency: 100ms, or "
        "remove the fault")]
    jitter: Duration = 0.0


class NetBandwidth(_FaultBase):
    kind: Literal["net-bandwidth"]
    edge: Edge
    rate_kbps: int = Field(ge=1)


class NetReset(_FaultBase):
    kind: Literal["net-reset"]
    edge: Edge
    after: Duration = 0.0


class Partition(_FaultBase):
    kind: Literal["partition"]
    from_: list[Name] = Field(alias="from", min_length=1)
    to: list[Name] = Field(min_length=1)
    mode: Literal["blackhole", "reject"] = "blackhole"
    via: Literal["proxy", "network"] = "proxy"
    """``proxy``: every edge between the groups crosses a Toxiproxy that cuts it (any mesh with one);
    ``network``: the ``from`` instances are disconnected from the mesh network (compose), as a pulled cable
    or a lost node is, which cuts them off from every peer: ``to`` must then name every service they talk
    with, and the mode is ``blackhole``."""

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class _Instances(_FaultBase):
    """A fault on some instances of a service: ``count`` of them, or ``percent`` of them."""

    count: int | None = Field(default=None, ge=1)
    percent: Percent | None = None

    @model_validator(mode="after")
    def _count_or_percent(self) -> _Instances:
        if self.count is not None and self.percent is not None:
            raise Located("give count: or percent:, not both", "percent")
        return self


class Kill(_Instances):
    kind: Literal["kill"]
    target: Target
    restart: bool = True


class Pause(_Instances):
    kind: Literal["pause"]
    target: Target


class ShiftStep(Strict):
    split: dict[Name, Percent]
    hold: Annotated[Duration, nonzero("a step held for 0s is skipped: write e.g. hold: 10s, or remove the step")]

    @model_validator(mode="after")
    def _sums(self) -> ShiftStep:
        total = sum(self.split.values())
        if abs(total - 100) > 1e-6:
            raise Located(f"split weights sum to {total:g}: make them sum to 100", "split")
        return self


class TrafficShift(_FaultBase):
    kind: Literal["traffic-shift"]
    service: Name
    steps: list[ShiftStep] = Field(min_length=1)
    on_fail: Literal["continue", "halt"] = "continue"

    @property
    def total_hold(self) -> float:
        """How long the shift takes: every step's hold, one after the other."""
        return sum(step.hold for step in self.steps)


class CertRotation(_FaultBase):
    kind: Literal["cert-rotation"]
    target: list[Name] | Literal["all"] = "all"
    what: Literal["leaf", "ca"] = "leaf"
    at: Duration | None = None
    hold: Duration = 0.0

    @field_validator("target", mode="before")
    @classmethod
    def _target_forms(cls, value: object) -> object:
        if isinstance(value, dict) and "service" in value:
            return [value["service"]]
        if isinstance(value, str) and value != "all":
            return [value]
        if isinstance(value, list):
            return [v["service"] if isinstance(v, dict) and "service" in v else v for v in value]
        return value

    @property
    def services(self) -> list[str] | None:
        """The services named, or None for ``all``."""
        return None if self.target == "all" else list(self.target)


class CertUntrusted(_FaultBase):
    kind: Literal["cert-untrusted"]
    target: Target


Fault = Annotated[
    HttpAbort | HttpDelay | NetLatency | NetBandwidth | NetReset | Partition | Kill | Pause | TrafficShift
    | CertRotation | CertUntrusted,
    Field(discriminator="kind"),
]


# -------------------------------------------------------------------------------------- expectations
class _ExpectBase(Strict):
    id: str | None = None


Bound = float | str
"""A number, or for latency a duration string such as ``250ms``."""

_EDGE_SCOPE = re.compile(r"edge:\s*[a-z0-9]([-a-z0-9]*[a-z0-9])?\s*->\s*[a-z0-9]([-a-z0-9]*[a-z0-9])?\s*")


def check_scope(value: str) -> str:
    """Where a signal is read: the client, a service's inbound sidecars, or an edge's calling sidecars."""
    if value == "client" or value.startswith("service:") or _EDGE_SCOPE.fullmatch(value):
        return value
    raise ValueError(f"scope '{value}' must be 'client', 'service:NAME' or 'edge:A->B': write e.g. "
                     f"scope: service:{value.rsplit(':', 1)[-1].strip() or 'NAME'}")


def check_signal_bounds(signal: str, quantile: float | None, bounds: dict[str, Bound | None]) -> None:
    """Bounds of the signal's own kind: latencies with a unit, rates as fractions, throughput as numbers.

    Shared by ``slo`` and ``abort_if`` so that one condition written twice means the same thing;
    ``bounds`` maps each bound's field name (``min``, ``below``...) to its value, so a problem is
    reported on that field's line.
    """
    if signal != "latency" and quantile is not None:
        raise Located("quantile: only applies to signal: latency; remove it", "quantile")
    for name, bound in bounds.items():
        if bound is None:
            continue
        if signal == "latency" and not isinstance(bound, str):
            raise Located(f"a latency bound needs a unit: write '{bound:g}ms'", name)
        if signal == "latency" and isinstance(bound, str):
            try:  # a latency bound the evaluator could not read is refused now, not mid-run
                parse_duration(bound)
            except ValueError as exc:
                raise Located(str(exc), name) from None
        if signal != "latency" and isinstance(bound, str):
            raise Located(f"{signal} bounds are numbers, not '{bound}': write e.g. {name}: 0.95", name)
        if signal in ("success_rate", "error_rate") and not 0 <= float(bound) <= 1:
            raise Located(f"{signal} is a fraction between 0 and 1, got {bound}: write e.g. {name}: 0.95 for 95%", name)


class Slo(_ExpectBase):
    kind: Literal["slo"]
    signal: Literal["success_rate", "error_rate", "latency", "throughput"]
    quantile: float | None = Field(default=None, gt=0, lt=1)
    scope: str = "client"
    window: Window = "fault"
    min: Bound | None = None
    max: Bound | None = None

    @field_validator("scope")
    @classmethod
    def _scope_form(cls, value: str) -> str:
        return check_scope(value)

    @model_validator(mode="after")
    def _bounds(self) -> Slo:
        if self.min is None and self.max is None:
            raise ValueError("give a bound: min: or max:")
        if self.signal == "latency" and self.quantile is None:
            raise ValueError("a latency SLO needs a quantile: add e.g. quantile: 0.99")
        check_signal_bounds(self.signal, self.quantile, {"min": self.min, "max": self.max})
        return self


class Route(Strict):
    from_: Name = Field(alias="from")
    to: Name

    def __str__(self) -> str:
        return f"{self.from_}->{self.to}"


class RetriesExpectation(_ExpectBase):
    kind: Literal["retries"]
    route: Route
    window: Window = "fault"
    model: Literal["oracle"] = "oracle"
    max_amplification: float | None = Field(default=None, ge=1)


class CircuitBreakerExpectation(_ExpectBase):
    kind: Literal["circuit-breaker"]
    route: Route
    window: Window = "fault"
    opens: bool = True
    max_concurrency: int | None = Field(default=None, ge=1)


class OutlierEjectionExpectation(_ExpectBase):
    kind: Literal["outlier-ejection"]
    route: Route
    instance: Target
    window: Window = "fault"
    ejected: bool = True
    within: int | None = Field(default=None, ge=1)


class TimeoutExpectation(_ExpectBase):
    kind: Literal["timeout"]
    route: Route
    window: Window = "fault"
    at: Annotated[Duration, nonzero("no request times out after 0s: write the route's timeout, e.g. at: 3s")]


class TrafficSplitExpectation(_ExpectBase):
    kind: Literal["traffic-split"]
    service: Name
    window: Window | None = None
    step: int | None = Field(default=None, ge=1)
    split: dict[Name, Percent]
    tolerance: Percent | None = Field(default=None, description="percentage points")

    @model_validator(mode="after")
    def _one_source(self) -> TrafficSplitExpectation:
        if self.window is not None and self.step is not None:
            raise ValueError("give window: or step:, not both")
        total = sum(self.split.values())
        if abs(total - 100) > 1e-6:
            raise Located(f"split weights sum to {total:g}: make them sum to 100", "split")
        return self

    @property
    def effective_window(self) -> Window:
        return self.window or "fault"


CanarySignal = Literal["latency", "errors", "error_rate", "success_rate"]


class CanaryExpectation(_ExpectBase):
    kind: Literal["canary"]
    service: Name
    baseline: Name
    canary: Name
    signals: list[CanarySignal] = Field(default_factory=lambda: list[CanarySignal](["latency", "errors"]))
    window: Window = "fault"
    step: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> CanaryExpectation:
        if "window" in self.model_fields_set and self.step is not None:
            raise Located("give window: or step:, not both", "step")
        if self.baseline == self.canary:
            raise Located(f"baseline and canary are both '{self.canary}': name two versions", "canary")
        return self


class MtlsExpectation(_ExpectBase):
    kind: Literal["mtls"]
    window: Window = "fault"
    failed_requests: int | None = Field(default=None, ge=0)
    rotated: bool | None = None
    rejects: list[Literal["untrusted", "plaintext", "wrong-identity"]] = Field(default_factory=list)


class PromqlExpectation(_ExpectBase):
    kind: Literal["promql"]
    query: str
    window: Window = "fault"
    min: float | None = None
    max: float | None = None


Expectation = Annotated[
    Slo | RetriesExpectation | CircuitBreakerExpectation | OutlierEjectionExpectation | TimeoutExpectation
    | TrafficSplitExpectation | CanaryExpectation | MtlsExpectation | PromqlExpectation,
    Field(discriminator="kind"),
]


class AbortCondition(Strict):
    signal: Literal["success_rate", "error_rate", "latency", "throughput"]
    scope: str = "client"
    quantile: float | None = Field(default=None, gt=0, lt=1)
    below: Bound | None = None
    above: Bound | None = None
    for_: Duration = Field(default=0.0, alias="for")

    @field_validator("scope")
    @classmethod
    def _scope_form(cls, value: str) -> str:
        return check_scope(value)

    @model_validator(mode="after")
    def _one_bound(self) -> AbortCondition:
        if (self.below is None) == (self.above is None):
            raise ValueError("give exactly one of below: or above:")
        check_signal_bounds(self.signal, self.quantile, {"below": self.below, "above": self.above})
        return self


class Experiment(Strict):
    name: Name
    description: str = ""
    tags: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_][-A-Za-z0-9_]*$")]] = Field(default_factory=list)
    policy: list[PolicyChange] = Field(default_factory=list)
    load: LoadSettings | None = None
    phases: Phases | None = None
    settle: Duration | None = None
    confidence: float | None = Field(default=None, gt=0.5, lt=1.0)
    faults: list[Fault] = Field(default_factory=list)
    expect: list[Expectation] = Field(default_factory=list)
    abort_if: list[AbortCondition] = Field(default_factory=list)
    inconclusive: Literal["fail", "pass"] | None = None

    @property
    def refused_peers(self) -> frozenset[str]:
        """The bad peers the experiment's ``mtls`` expectations say are refused (its refusal test)."""
        return frozenset(k for e in self.expect if isinstance(e, MtlsExpectation) for k in e.rejects)


class SuiteSpec(Strict):
    environment: str | None = None
    defaults: Defaults = Field(default_factory=Defaults)
    inconclusive: Literal["fail", "pass"] | None = None
    experiments: list[Experiment] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> SuiteSpec:
        names = [e.name for e in self.experiments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            second = next(i for i, n in enumerate(names) if n in names[:i])
            raise Located(f"experiment name(s) {dupes} are used more than once; names must be unique: rename "
                          "this one",
                          "experiments", second, "name")
        return self

    @model_validator(mode="after")
    def _phases_can_run(self) -> SuiteSpec:
        """Every experiment's phases, merged with the defaults, can run: a fault phase that applies its
        faults for longer than 0s, and a total the load generator will carry (``MAX_EXPERIMENT_S``).

        Checked here, not by the runner, so that ``validate`` refuses ``fault: 99999h`` before anything
        runs; each problem points at the line that sets the offending length (the experiment's own
        phase, else the suite's ``defaults.phases``).
        """
        found = [problem for i, exp in enumerate(self.experiments) for problem in _phase_problems(self, i, exp)]
        if found:
            raise Problems(found)
        return self


class Suite(Strict):
    api_version: Literal["harness/v1"] = Field(alias="apiVersion")
    kind: Literal["Suite"]
    metadata: Metadata
    spec: SuiteSpec


# ------------------------------------------------------------------------------------ phase checks
PathPart = str | int


def phase_source(spec: SuiteSpec, index: int, phase: str) -> tuple[PhaseLength | None, tuple[PathPart, ...]]:
    """The value a phase takes after the same merge as the runner's, and where it was written.

    The experiment's own ``phases`` win over ``defaults.phases``, which win over ``DEFAULT_PHASES``
    (returned as ``None`` with the experiment's path, having no line of its own).
    """
    exp = spec.experiments[index]
    own = getattr(exp.phases, phase) if exp.phases is not None else None
    if own is not None:
        return own, ("experiments", index, "phases", phase)
    default = getattr(spec.defaults.phases, phase)
    if default is not None:
        return default, ("defaults", "phases", phase)
    return None, ("experiments", index, "name")


def _longest(value: PhaseLength | None, phase: str) -> float:
    if value is None:
        return DEFAULT_PHASES[phase]
    return value.max if isinstance(value, AdaptivePhase) else float(value)


def _phase_problems(spec: SuiteSpec, index: int, exp: Experiment) -> list[Located]:
    sources = {name: phase_source(spec, index, name) for name in PHASE_NAMES}
    lengths = {name: _longest(value, name) for name, (value, _) in sources.items()}
    paths = {name: (*path, "max") if isinstance(value, AdaptivePhase) else path
             for name, (value, path) in sources.items()}
    problems = []
    if exp.faults and lengths["fault"] <= 0:
        problems.append(Located(
            f"the fault phase of '{exp.name}' lasts 0s, so its faults would never be applied; "
            "give it a length, e.g. fault: 10s", *paths["fault"]))
    # A traffic shift moves through its steps during the fault phase: the steps' holds count as its length
    # when they are longer.
    shifts = [(j, f) for j, f in enumerate(exp.faults) if isinstance(f, TrafficShift)]
    longest_shift = max(shifts, key=lambda jf: jf[1].total_hold, default=None)
    other_holds = 0.0  # when the holds set the fault phase's length: the holds but the one pointed at
    if longest_shift is not None and longest_shift[1].total_hold > lengths["fault"]:
        j, shift = longest_shift
        k = max(range(len(shift.steps)), key=lambda n: shift.steps[n].hold)
        lengths["fault"] = shift.total_hold
        other_holds = shift.total_hold - shift.steps[k].hold
        paths["fault"] = ("experiments", index, "faults", j, "steps", k, "hold")
    total = sum(lengths.values())
    if total > MAX_EXPERIMENT_S:
        # The phase that contributes most is the one to shorten (on a tie, the later one).
        worst = max(reversed(PHASE_NAMES), key=lambda name: lengths[name])
        room = MAX_EXPERIMENT_S - (total - lengths[worst]) - (other_holds if worst == "fault" else 0.0)
        parts = " + ".join(f"{name} {format_compound(lengths[name])}" for name in PHASE_NAMES)
        if other_holds or paths["fault"][-1] == "hold":
            parts += ", the fault phase lasting as long as the traffic shift's holds"
        advice = (f"shorten this to at most {format_compound(room)}" if room >= 1 else
                  "shorten the phases")
        problems.append(Located(
            f"experiment '{exp.name}' would run {format_compound(total)} ({parts}), longer than the "
            f"{format_compound(MAX_EXPERIMENT_S)} one experiment may run (the load generator stops after "
            f"{format_compound(MAX_EXPERIMENT_S + LOAD_MARGIN_S)}, less {format_compound(LOAD_MARGIN_S)} "
            f"for setup); {advice}, or split the experiment", *paths[worst]))
    return problems
