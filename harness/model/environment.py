"""The Environment document: the topology of a mesh and the policies it declares on each edge.

The environment describes what IS (or, for the local mesh, what the harness builds). Policies here are
the mesh's promises; suites then test them. Fields mirror SUITE-FORMAT §1 exactly.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from harness.model.common import Located, Metadata, Name, Percent, Strict
from harness.model.durations import Duration

__all__ = [
    "Behaviour",
    "Call",
    "CircuitBreaker",
    "EdgePolicy",
    "Environment",
    "EnvironmentSpec",
    "Gateway",
    "MetricsConfig",
    "OutlierDetection",
    "Retries",
    "Safety",
    "Service",
    "VersionSpec",
]


class Retries(Strict):
    """A retry policy. ``attempts`` counts retries (not tries): at most 1+attempts upstream attempts."""

    attempts: int = Field(ge=0, le=100)
    on: list[str] = Field(default_factory=lambda: ["5xx"], description="Envoy retry_on conditions")
    per_try_timeout: Duration | None = None

    @field_validator("on", mode="before")
    @classmethod
    def _codes_as_text(cls, value: object) -> object:
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value

    @field_validator("on")
    @classmethod
    def _known_conditions(cls, value: list[str]) -> list[str]:
        known = {
            "5xx", "gateway-error", "reset", "connect-failure", "envoy-ratelimited", "retriable-4xx",
            "refused-stream", "retriable-status-codes", "retriable-headers", "reset-before-request",
            "http3-post-connect-failure", "cancelled", "deadline-exceeded", "internal",
            "resource-exhausted", "unavailable",
        }
        for item in value:
            if item not in known and not (item.isdigit() and 100 <= int(item) <= 599):
                raise ValueError(
                    f"unknown retry condition '{item}': use one of 5xx, gateway-error, reset, "
                    "connect-failure, refused-stream, retriable-4xx, or a status code such as '503'"
                )
        return value


class CircuitBreaker(Strict):
    """Envoy circuit-breaker thresholds for one caller's sidecar towards one callee."""

    max_connections: int | None = Field(default=None, ge=1)
    max_pending: int | None = Field(default=None, ge=1)
    max_requests: int | None = Field(default=None, ge=1)
    max_retries: int | None = Field(default=None, ge=0)


class OutlierDetection(Strict):
    consecutive_5xx: int | None = Field(default=None, ge=0)
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: int | None = Field(default=None, ge=0, le=100)


class EdgePolicy(Strict):
    """The mesh policy on one edge. Absent fields fall back to the mesh's defaults (see plan)."""

    retries: Retries | None = None
    timeout: Duration | None = None
    circuit_breaker: CircuitBreaker | None = None
    outlier_detection: OutlierDetection | None = None


class Call(EdgePolicy):
    """An outbound call a service makes for every inbound request, with that edge's policy."""

    to: Name
    optional: bool = False


class Behaviour(Strict):
    """The demo service's own baseline behaviour. ``error_rate`` is a fraction (0.05 = 5%)."""

    latency: Duration = 0.0
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    error_status: int = Field(default=500, ge=400, le=599)


class VersionSpec(Strict):
    replicas: int = Field(default=1, ge=1, le=50)
    behaviour: Behaviour | None = None


def _default_versions() -> dict[str, VersionSpec]:
    return {"v1": VersionSpec()}


class Service(Strict):
    name: Name
    versions: dict[Name, VersionSpec] = Field(default_factory=_default_versions)
    calls: list[Call] = Field(default_factory=list)
    split: dict[Name, Percent] | None = None
    behaviour: Behaviour = Field(default_factory=Behaviour)

    @field_validator("versions", mode="before")
    @classmethod
    def _null_versions(cls, value: object) -> object:
        # `versions: {v1: {}, v2: }` — a bare key means "defaults".
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _split_matches_versions(self) -> Service:
        if not self.versions:
            raise ValueError("a service needs at least one version, e.g. versions: {v1: {}}")
        if self.split is not None:
            unknown = sorted(set(self.split) - set(self.versions))
            if unknown:
                raise Located(
                    f"split names version(s) {unknown} that {self.name} does not have; "
                    f"versions are {sorted(self.versions)}", "split"
                )
            total = sum(self.split.values())
            if abs(total - 100) > 1e-6:
                raise Located(f"split weights sum to {total:g}, they must sum to 100", "split")
        callees = [c.to for c in self.calls]
        if len(set(callees)) != len(callees):
            raise ValueError(f"{self.name} calls the same service twice; list each callee once")
        return self

    def effective_split(self) -> dict[str, float]:
        """The split in force: the declared one, else proportional to replicas (what a Service does)."""
        if self.split is not None:
            return dict(self.split)
        total = sum(v.replicas for v in self.versions.values())
        return {name: 100.0 * v.replicas / total for name, v in self.versions.items()}

    def behaviour_of(self, version: str) -> Behaviour:
        spec = self.versions[version]
        return spec.behaviour if spec.behaviour is not None else self.behaviour


class Gateway(Strict):
    service: Name
    port: int = Field(default=0, ge=0, le=65535)


class MetricsConfig(Strict):
    source: Literal["envoy", "prometheus"] = "envoy"
    url: str | None = None
    scrape_interval: Duration = 1.0


class Safety(Strict):
    max_fault_percent: Percent = 100
    allowed_contexts: list[str] = Field(default_factory=list)
    allowed_namespaces: list[str] = Field(default_factory=list)


class EnvironmentSpec(Strict):
    mesh: Literal["local", "compose", "istio", "linkerd"] = "local"
    gateway: Gateway
    services: list[Service] = Field(min_length=1)
    mtls: Literal["strict", "permissive", "off"] = "strict"
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    safety: Safety = Field(default_factory=Safety)

    @model_validator(mode="after")
    def _topology(self) -> EnvironmentSpec:
        names = [s.name for s in self.services]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            second = next(i for i, n in enumerate(names) if n in names[:i])
            raise Located(f"service(s) {dupes} are declared more than once", "services", second, "name")
        known = set(names)
        if self.gateway.service not in known:
            raise Located(f"gateway service '{self.gateway.service}' is not one of the services {names}",
                          "gateway", "service")
        for i, svc in enumerate(self.services):
            for j, call in enumerate(svc.calls):
                if call.to not in known:
                    raise Located(f"{svc.name} calls '{call.to}', which is not a declared service",
                                  "services", i, "calls", j, "to")
        cycle = _find_cycle({s.name: [c.to for c in s.calls] for s in self.services})
        if cycle:
            i = names.index(cycle[-2])
            j = [c.to for c in self.services[i].calls].index(cycle[-1])
            raise Located(
                "calls form a cycle (" + " -> ".join(cycle) + "): every request would recurse forever",
                "services", i, "calls", j, "to",
            )
        return self

    def service(self, name: str) -> Service:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)

    def call(self, caller: str, callee: str) -> Call | None:
        for call in self.service(caller).calls:
            if call.to == callee:
                return call
        return None

    def edges(self) -> list[tuple[str, str]]:
        return [(s.name, c.to) for s in self.services for c in s.calls]

    def callers_of(self, name: str) -> list[str]:
        return [s.name for s in self.services if any(c.to == name for c in s.calls)]


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


class Environment(Strict):
    api_version: Literal["harness/v1"] = Field(alias="apiVersion")
    kind: Literal["Environment"]
    metadata: Metadata
    spec: EnvironmentSpec
