"""The harness's own names for what a mesh measures: the vocabulary expectations read.

Why a vocabulary: expectations must judge Istio, Linkerd and the local mesh alike, and each names the
same fact differently (``cluster.out_ratings_v1.upstream_rq_timeout`` on the local mesh,
``cluster.outbound|9080|v1|ratings.shop.svc.cluster.local.upstream_rq_timeout`` under Istio). A metric
source maps its native names into these quantities (for Envoy: :mod:`harness.metrics.envoy_names`),
and expectations read only the quantities, through :class:`harness.assertions.WindowEvidence`.

Three places a sidecar measures, each a *scope*:

* :class:`Upstream` — a calling sidecar's view of one callee version (an Envoy cluster): how many
  attempts it made, how they ended, what its breakers and outlier detector did. The edge ``A -> B`` is
  every ``Upstream(B, v)`` on A's sidecars.
* :class:`Listener` — what a sidecar's listener answered to whoever called it: its ``inbound`` side
  (what the service answered its callers) or its ``outbound`` side for one callee (what the mesh
  answered the caller's app on that edge, after retries, timeouts and breakers).
* per host of an upstream (:class:`HostCounts`) — one callee instance as one caller sidecar saw it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "GAUGES",
    "LISTENER_COUNTERS",
    "TLS_COUNTERS",
    "UPSTREAM_COUNTERS",
    "Bins",
    "HostCounts",
    "Listener",
    "NodeQuantities",
    "Upstream",
]

Bins = list[tuple[float, float, int]]
"""A latency histogram: (lower bound ms, width ms, count) per bin."""

UPSTREAM_COUNTERS = (
    "attempts",              # upstream requests made (first tries and retries)
    "retries",               # of which retries
    "successes",             # attempts answered 2xx
    "final_5xx",             # requests whose final answer was 5xx (retried answers are not counted)
    "retry_overflow",        # retries refused by the retry circuit breaker
    "retry_limit_exceeded",  # requests that used every retry and still failed
    "pending_overflow",      # requests refused because the pending queue was full (max_pending)
    "active_overflow",       # requests refused because max_requests were active
    "connection_overflow",   # times max_connections was reached (requests then queue, not fail)
    "route_timeouts",        # requests ended by the route timeout (504)
    "per_try_timeouts",      # attempts ended by the per-try timeout
    "connect_failures",      # connections that could not be made
    "ejections_enforced",    # outlier ejections enforced
    "ejections_overflow",    # ejections refused by max_ejection_percent
    "panic_routed",          # requests routed in panic mode (too few healthy hosts: health ignored)
    "no_healthy_host",       # requests refused because no host was healthy
)
"""Cumulative counters of an :class:`Upstream`; a window reads their increase."""

GAUGES = (
    "ejections_active",      # hosts ejected right now
    "hosts",                 # hosts in the upstream
    "healthy_hosts",         # of which healthy (not ejected, not failing health checks)
)
"""Instantaneous values of an :class:`Upstream`; a window reads them from the snapshots inside it."""

LISTENER_COUNTERS = ("completed", "1xx", "2xx", "3xx", "4xx", "5xx")
"""What a :class:`Listener` answered, by status class."""

TLS_COUNTERS = (
    "tls_handshakes",        # mTLS handshakes completed
    "tls_errors",            # handshakes that failed for any reason (plaintext to a TLS listener included)
    "tls_untrusted",         # of which: the peer's certificate chains to no trusted root
    "tls_wrong_identity",    # of which: trusted, but the peer's identity (URI SAN) is not the one accepted
    "tls_no_cert",           # of which: the peer presented no certificate where one is required
)
"""Handshake counters, on both sides of an mTLS connection: an :class:`Upstream` counts the handshakes a
caller made to that callee (did it accept the server?), the ``inbound`` :class:`Listener` those its
callers made to it (did it accept the client?). The same names in both dicts."""


@dataclass(frozen=True, slots=True)
class Upstream:
    """One callee version as a calling sidecar sees it (one Envoy cluster)."""

    callee: str
    version: str


@dataclass(frozen=True, slots=True)
class Listener:
    """One side of a sidecar: ``inbound`` (its own service's callers) or ``outbound`` towards ``callee``.

    ``ingress`` is a gateway's listener: what the users' requests were answered.
    """

    side: Literal["inbound", "outbound", "ingress"]
    callee: str = ""


@dataclass(frozen=True, slots=True)
class HostCounts:
    """One host of an upstream as one calling sidecar saw it."""

    requests: float
    errors: float
    ejected: bool


@dataclass
class NodeQuantities:
    """Everything one sidecar measured, in the vocabulary: counters and gauges per scope, latency bins
    per listener, and per-host counts per upstream."""

    upstream: dict[Upstream, dict[str, float]] = field(default_factory=dict)
    listeners: dict[Listener, dict[str, float]] = field(default_factory=dict)
    latency: dict[Listener, Bins] = field(default_factory=dict)
    hosts: dict[Upstream, dict[str, HostCounts]] = field(default_factory=dict)
