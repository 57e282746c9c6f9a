"""The Suite document: experiments, each a fault under load with expectations (SUITE-FORMAT §2).

Every kind in the contract's tables is modelled, so any document written to the contract loads; what a
given mesh driver cannot do yet is refused later, at plan time, with a message naming the experiment.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from harness.model.common import Edge, Located, Metadata, Name, Percent, Strict, Target
from harness.model.durations import Duration
from harness.model.environment import CircuitBreaker, OutlierDetection, Retries

__all__ = [
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


class LoadSettings(Strict):
    """Open-ish load: ``users`` concurrent Locust users sharing a constant total ``rate`` (req/s)."""

    users: int | None = Field(default=None, ge=1, le=1000)
    rate: float | None = Field(default=None, gt=0, le=20000)
    path: str | None = Field(default=None, pattern=r"^/")
    headers: dict[str, str] | None = None

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
        if self.max < self.min:
            raise ValueError("max must not be shorter than min")
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
    delay: Duration
    percent: Percent
    headers: dict[str, str] | None = None
    at: Literal["target", "caller"] = "target"


class NetLatency(_FaultBase):
    kind: Literal["net-latency"]
    edge: Edge
    latency: Duration
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

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class Kill(_FaultBase):
    kind: Literal["kill"]
    target: Target
    count: int | None = Field(default=None, ge=1)
    percent: Percent | None = None
    restart: bool = True


class Pause(_FaultBase):
    kind: Literal["pause"]
    target: Target
    count: int | None = Field(default=None, ge=1)
    percent: Percent | None = None


class ShiftStep(Strict):
    split: dict[Name, Percent]
    hold: Duration

    @model_validator(mode="after")
    def _sums(self) -> ShiftStep:
        total = sum(self.split.values())
        if abs(total - 100) > 1e-6:
            raise ValueError(f"split weights sum to {total:g}, they must sum to 100")
        return self


class TrafficShift(_FaultBase):
    kind: Literal["traffic-shift"]
    service: Name
    steps: list[ShiftStep] = Field(min_length=1)


class CertRotation(_FaultBase):
    kind: Literal["cert-rotation"]
    target: list[Name] | Literal["all"] = "all"
    what: Literal["leaf", "ca"] = "leaf"
    at: Duration = 0.0

    @field_validator("target", mode="before")
    @classmethod
    def _target_forms(cls, value: object) -> object:
        if isinstance(value, dict) and "service" in value:
            return [value["service"]]
        if isinstance(value, str) and value != "all":
            return [value]
        return value


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
    raise ValueError(f"scope '{value}' must be 'client', 'service:NAME' or 'edge:A->B'")


def check_signal_bounds(signal: str, quantile: float | None, bounds: tuple[Bound | None, ...]) -> None:
    """Bounds of the signal's own kind: latencies with a unit, rates as fractions, throughput as numbers.

    Shared by ``slo`` and ``abort_if`` so that one condition written twice means the same thing.
    """
    if signal != "latency" and quantile is not None:
        raise ValueError("quantile: only applies to signal: latency")
    for bound in bounds:
        if bound is None:
            continue
        if signal == "latency" and not isinstance(bound, str):
            raise ValueError(f"a latency bound needs a unit: write '{bound:g}ms'")
        if signal != "latency" and isinstance(bound, str):
            raise ValueError(f"{signal} bounds are numbers, not '{bound}'")
        if signal in ("success_rate", "error_rate") and not 0 <= float(bound) <= 1:
            raise ValueError(f"{signal} is a fraction between 0 and 1, got {bound}")


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
            raise ValueError("a latency SLO needs quantile:, e.g. quantile: 0.99")
        check_signal_bounds(self.signal, self.quantile, (self.min, self.max))
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
    at: Duration


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
            raise Located(f"split weights sum to {total:g}, they must sum to 100", "split")
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


class MtlsExpectation(_ExpectBase):
    kind: Literal["mtls"]
    window: Window = "fault"
    failed_requests: int | None = Field(default=None, ge=0)
    rotated: bool | None = None
    rejects: list[Literal["untrusted", "plaintext"]] = Field(default_factory=list)


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
        check_signal_bounds(self.signal, self.quantile, (self.below, self.above))
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
            raise Located(f"experiment name(s) {dupes} are used more than once; names must be unique",
                          "experiments", second, "name")
        return self


class Suite(Strict):
    api_version: Literal["harness/v1"] = Field(alias="apiVersion")
    kind: Literal["Suite"]
    metadata: Metadata
    spec: SuiteSpec
