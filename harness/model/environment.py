"""The Environment document: the topology of a mesh and the policies it declares on each edge.

The environment describes what IS (or, for the local mesh, what the harness builds). Policies here are
the mesh's promises; suites then test them. Fields mirror SUITE-FORMAT §1; where Istio users have a
spelling of their own that means one thing (``retryOn: "5xx,connect-failure"``, ``mode: STRICT``) it is
accepted too, because environments are often written by copying from a VirtualService or a
PeerAuthentication. A spelling that could mean two things is refused, naming the accepted form.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from harness.model.common import Located, Metadata, Name, Percent, Strict
from harness.model.durations import Duration, nonzero

__all__ = [
    "Behaviour",
    "Call",
    "CircuitBreaker",
    "ComposeSettings",
    "ConsulSettings",
    "EdgePolicy",
    "Environment",
    "EnvironmentSpec",
    "Gateway",
    "IstioSettings",
    "LinkerdSettings",
    "MetricsConfig",
    "MtlsMode",
    "OutlierDetection",
    "Retries",
    "RetryOn",
    "Safety",
    "Service",
    "VersionSpec",
]

RETRY_CONDITIONS = frozenset({
    "5xx", "gateway-error", "reset", "connect-failure", "envoy-ratelimited", "retriable-4xx",
    "refused-stream", "retriable-status-codes", "retriable-headers", "reset-before-request",
    "http3-post-connect-failure", "cancelled", "deadline-exceeded", "internal",
    "resource-exhausted", "unavailable",
})
"""Envoy's ``retry_on`` conditions (HTTP and gRPC), which Istio's ``retryOn`` passes through."""


def _retry_on_forms(value: object) -> object:
    """``[5xx, 503]``, ``5xx``, ``"5xx,connect-failure"`` (Istio's retryOn) or ``503``, as a list of text.

    Istio writes the conditions as one comma-separated string; a list entry may be one too. Words
    separated by spaces only are refused: that is neither Istio's form nor a YAML list.
    """
    items = value if isinstance(value, list) else [value]
    out: list[object] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            out.append(str(item))
        elif isinstance(item, str):
            parts = [p.strip() for p in item.split(",")]
            for part in (p for p in parts if p):
                if re.search(r"\s", part):
                    listed = ", ".join(part.split())
                    raise ValueError(f"'{part}': separate retry conditions with commas, "
                                     f"on: [{listed}] or on: \"{listed.replace(' ', '')}\"")
                out.append(part)
        else:
            out.append(item)
    return out


_RETRY_ON_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "array", "items": {"type": "string"}},
        {"type": "string", "examples": ["5xx", "5xx,connect-failure"]},
    ],
}

RetryOn = Annotated[list[str], BeforeValidator(_retry_on_forms), WithJsonSchema(_RETRY_ON_SCHEMA)]
"""Retry conditions: a list, or Istio's comma-separated ``retryOn`` string."""

_MTLS_SPELLINGS = {
    "strict": "strict", "permissive": "permissive", "off": "off", "disable": "off",
}
"""Our modes, and Istio's PeerAuthentication modes (``STRICT``, ``PERMISSIVE``, ``DISABLE``), any case."""


def _mtls_forms(value: object) -> object:
    """Map Istio's PeerAuthentication spelling onto ours; refuse the ones that could mean two things."""
    if isinstance(value, bool):
        raise ValueError(f"mtls: {str(value).lower()} could mean strict or permissive; write strict "
                         "(mutual TLS only), permissive (TLS or plaintext) or off"
                         if value else "write mtls: off (false is not one of the modes)")
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _MTLS_SPELLINGS:
            return _MTLS_SPELLINGS[key]
        if key == "unset":
            raise ValueError("UNSET inherits a parent's mode in Istio, and an environment has no parent: "
                             "write strict, permissive or off")
        if key in ("istio_mutual", "mutual"):
            raise ValueError(f"'{value}' is a DestinationRule (client) TLS mode, not how sidecars accept "
                             "connections: write strict (mutual TLS only), permissive or off")
    return value


MtlsMode = Annotated[
    Literal["strict", "permissive", "off"],
    BeforeValidator(_mtls_forms),
    WithJsonSchema({"enum": ["strict", "permissive", "off", "STRICT", "PERMISSIVE", "DISABLE"]}),
]
"""How sidecars accept connections; Istio's PeerAuthentication modes are accepted too."""


class Retries(Strict):
    """A retry policy. ``attempts`` counts retries (not tries): at most 1+attempts upstream attempts."""

    attempts: int = Field(ge=0, le=100)
    on: RetryOn = Field(default_factory=lambda: ["5xx"], description="Envoy retry_on conditions")
    per_try_timeout: Duration | None = None

    @field_validator("on")
    @classmethod
    def _known_conditions(cls, value: list[str]) -> list[str]:
        for item in value:
            if item not in RETRY_CONDITIONS and not (item.isdigit() and 100 <= int(item) <= 599):
                raise ValueError(
                    f"unknown retry condition '{item}': use one of 5xx, gateway-error, reset, "
                    "connect-failure, refused-stream, retriable-4xx, or a status code such as '503'"
                )
        if not value:
            raise ValueError("give at least one retry condition, e.g. on: [5xx]; "
                             "to switch retries off write attempts: 0")
        return value


class CircuitBreaker(Strict):
    """Envoy circuit-breaker thresholds for one caller's sidecar towards one callee."""

    max_connections: int | None = Field(default=None, ge=1)
    max_pending: int | None = Field(default=None, ge=1)
    max_requests: int | None = Field(default=None, ge=1)
    max_retries: int | None = Field(default=None, ge=0)


class OutlierDetection(Strict):
    consecutive_5xx: int | None = Field(default=None, ge=0)
    interval: Annotated[Duration, nonzero(
        "an interval of 0s would never evaluate ejections: write "
        "e.g. interval: 10s (Envoy's default)")] | None = None
    base_ejection_time: Annotated[Duration, nonzero("an instance ejected for 0s returns at once: write e.g. "
                                                    "base_ejection_time: 30s (Envoy's default)")] | None = None
    max_ejection_percent: int | None = Field(default=None, ge=0, le=100)
    min_health_percent: int | None = Field(default=None, ge=0, le=100)


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
            raise ValueError("a service needs at least one version: write e.g. versions: {v1: {}}")
        if self.split is not None:
            unknown = sorted(set(self.split) - set(self.versions))
            if unknown:
                raise Located(
                    f"split names version(s) {unknown} that {self.name} does not have: use its versions, "
                    f"{', '.join(sorted(self.versions))}", "split"
                )
            total = sum(self.split.values())
            if abs(total - 100) > 1e-6:
                raise Located(f"split weights sum to {total:g}: make them sum to 100", "split")
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
    url: Annotated[str, Field(pattern=r"^https?://[^\s/?#]+[^\s]*$")] | None = None

    @field_validator("url", mode="before")
    @classmethod
    def _url_form(cls, value: object) -> object:
        if isinstance(value, str) and not re.match(r"^https?://[^\s/?#]+[^\s]*$", value):
            host = value.split("://", 1)[-1].strip()
            raise ValueError(f"'{value}' is not an http(s) URL: write e.g. url: http://{host or '127.0.0.1:8080'}")
        return value


class MetricsConfig(Strict):
    source: Literal["envoy", "prometheus"] = "envoy"
    url: str | None = None
    scrape_interval: Annotated[Duration, nonzero(
        "counters cannot be scraped every 0s: write e.g. "
        "scrape_interval: 1s")] = 1.0


class Safety(Strict):
    max_fault_percent: Percent = 100
    allowed_contexts: list[str] = Field(default_factory=list)
    allowed_namespaces: list[str] = Field(default_factory=list)


ControlPlane = Literal["local", "cluster"]


class IstioSettings(Strict):
    """Where the Istio control plane is and which of the user's Istio resources belong to the environment."""

    control_plane: ControlPlane = "cluster"
    namespace: Name = "default"
    config: list[str] = Field(default_factory=list)


class LinkerdSettings(Strict):
    """Where the services of a Linkerd mesh live, and whose authorization policy a refusal test tests."""

    namespace: Name = "default"
    authorization: Literal["cluster", "declared"] = Field(
        default="cluster",
        description="cluster: a refusal test (an mtls expectation with rejects) tests the authorization policy the "
                    "cluster has. declared: for such an experiment the harness puts the environment's mtls: strict "
                    "in force (Server, MeshTLSAuthentication and AuthorizationPolicy per service: only its declared "
                    "callers, over mTLS; the gateway's service any meshed caller) and removes it afterwards")


class ConsulSettings(Strict):
    """Where the Consul agent is, and where its ACL token comes from (never from the file itself)."""

    control_plane: ControlPlane = "cluster"
    address: Annotated[str, Field(pattern=r"^https?://[^\s/?#]+[^\s]*$")] = "http://127.0.0.1:8500"
    token_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_secrets_in_the_file(cls, value: object) -> object:
        if isinstance(value, dict) and "token" in value:
            raise Located("the ACL token is never read from the file: put it in an environment variable "
                          "and name that here, e.g. token_env: CONSUL_HTTP_TOKEN", "token")
        return value


class ComposeSettings(Strict):
    """The docker compose project the harness generates from ``services:``."""

    project: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=63)] | None = None


class EnvironmentSpec(Strict):
    mesh: Literal["local", "compose", "istio", "linkerd", "consul"] = "local"
    gateway: Gateway
    services: list[Service] = Field(min_length=1)
    mtls: MtlsMode = "strict"
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    safety: Safety = Field(default_factory=Safety)
    istio: IstioSettings | None = None
    linkerd: LinkerdSettings | None = None
    consul: ConsulSettings | None = None
    compose: ComposeSettings | None = None

    @model_validator(mode="after")
    def _topology(self) -> EnvironmentSpec:
        names = [s.name for s in self.services]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            second = next(i for i, n in enumerate(names) if n in names[:i])
            raise Located(f"service(s) {dupes} are declared more than once: declare each service once (rename or "
                          "remove this one)", "services", second, "name")
        known = set(names)
        if self.gateway.service not in known:
            raise Located(f"gateway service '{self.gateway.service}' is not a declared service: name one of "
                          f"{', '.join(names)}",
                          "gateway", "service")
        for i, svc in enumerate(self.services):
            for j, call in enumerate(svc.calls):
                if call.to not in known:
                    raise Located(f"{svc.name} calls '{call.to}', which is not a declared service: declare it "
                                  f"under services, or call one of {', '.join(n for n in names if n != svc.name)}",
                                  "services", i, "calls", j, "to")
        if self.linkerd is not None and self.linkerd.authorization == "declared" and self.mtls != "strict":
            raise Located(f"linkerd.authorization: declared puts mtls: strict in force for refusal tests, and this "
                          f"environment declares mtls: {self.mtls}: write mtls: strict, or authorization: cluster",
                          "linkerd", "authorization")
        cycle = _find_cycle({s.name: [c.to for c in s.calls] for s in self.services})
        if cycle:
            i = names.index(cycle[-2])
            j = [c.to for c in self.services[i].calls].index(cycle[-1])
            raise Located(
                "calls form a cycle (" + " -> ".join(cycle) + "): every request would recurse forever; remove "
                "this call or another one of the cycle",
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

    @property
    def declares_admission(self) -> bool:
        """Is this environment's ``mtls: strict`` written into the mesh for refusal tests (Linkerd's
        ``authorization: declared``), rather than tested as the mesh has it?"""
        return self.mesh == "linkerd" and self.linkerd is not None and self.linkerd.authorization == "declared"

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
