"""Evidence: what one window of one experiment saw, in the only form expectations may read.

Expectations never talk to a mesh, and never read a mesh's own metric names. They get client records
(one per request Locust made), the window's counters in the harness's vocabulary
(:mod:`harness.metrics.vocabulary`: attempts, retries, overflows, timeouts, ejections per edge; what
each listener answered; latency bins), the demo apps' own records (attempts per request, how their
outbound calls ended, concurrency), the snapshots taken inside the window (for what a difference of
two counters cannot show), which instances exist, and the policy in force on each edge.

The metric source's snapshots carry their :class:`~harness.metrics.envoy_names.Naming`, which maps the
mesh's names into the vocabulary; nothing here knows a stat name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from harness.mesh.policy import ResolvedPolicy
from harness.metrics.snapshot import NodeInfo, Snapshot
from harness.metrics.tls import PeerProbe, ServedCert
from harness.metrics.vocabulary import Bins, HostCounts, Listener, NodeQuantities, Upstream
from harness.traffic.load import Record

__all__ = ["CallOutcomes", "EdgeCounts", "Evidence", "HcmCounts", "ListenerCounts", "MtlsEvidence", "TlsCounts",
           "UpstreamState", "WindowEvidence", "is_success"]


def is_success(status: int) -> bool:
    """A response arrived and was not a 5xx: the meaning of success at every scope (as in Istio's
    success-rate metrics), so client and sidecar numbers are comparable. Status 0 is a connection error."""
    return 0 < status < 500


@dataclass(frozen=True)
class EdgeCounts:
    """Upstream side of an edge, summed over every calling sidecar and every callee version (or one)."""

    attempts: float = 0.0
    retries: float = 0.0
    successes: float = 0.0
    final_5xx: float = 0.0
    retry_overflow: float = 0.0
    retry_limit_exceeded: float = 0.0
    pending_overflow: float = 0.0
    active_overflow: float = 0.0
    connection_overflow: float = 0.0
    route_timeouts: float = 0.0
    per_try_timeouts: float = 0.0
    connect_failures: float = 0.0
    ejections_enforced: float = 0.0
    ejections_overflow: float = 0.0
    panic_routed: float = 0.0
    no_healthy_host: float = 0.0

    @property
    def requests(self) -> float:
        """Requests the callers sent (each may have made several attempts)."""
        return self.attempts - self.retries

    @property
    def failed_attempts(self) -> float:
        """Attempts that did not succeed. Clamped at 0: a request in flight when the window opened is
        counted as an attempt before the window and as a success inside it, so a version that did not
        fail at all can read -1 or -2."""
        return max(0.0, self.attempts - self.successes)

    @property
    def overflow(self) -> float:
        """Requests a circuit breaker refused: the pending queue's and max_requests' overflows."""
        return self.pending_overflow + self.active_overflow

    @property
    def timeouts(self) -> float:
        """Route timeouts and per-try timeouts together."""
        return self.route_timeouts + self.per_try_timeouts

    def unattempted(self, route: str) -> str | None:
        """Why the upstream side cannot be judged when the mesh counts answers but no attempts (its sidecars
        do not export their upstream counters: an Istio cluster without the cluster stats); None otherwise."""
        if self.attempts > 0 or self.successes + self.final_5xx <= 0:
            return None
        return (f"the mesh's metrics count {round(self.successes + self.final_5xx)} requests on {route} but no "
                "attempts: its sidecars do not export their upstream counters, overflows and retries among them "
                "(Istio: a proxyStatsMatcher with inclusionPrefixes [cluster.outbound]); more requests would not "
                "settle it")


_EDGE_FIELDS = tuple(f.name for f in fields(EdgeCounts))


@dataclass(frozen=True)
class ListenerCounts:
    """What a listener answered to its callers: all completed requests, the 1xx-3xx, the 5xx."""

    total: float
    ok: float
    xx5: float

    @classmethod
    def of(cls, total: float, ok: float, xx5: float) -> ListenerCounts:
        """Counts read from one snapshot at each end of a window, none above the total. Envoy reads a listener's
        counters one after the other, not at one instant (its admin ``/stats`` and ``/stats/prometheus`` alike):
        a request that ends between two reads is in one counter and not yet in the next, so under load a
        window's 5xx can come out one or two above its completed requests (measured: 201 5xx of 200 completed,
        every answer a 5xx). A class is never more than all of them."""
        return cls(total=total, ok=min(ok, total), xx5=min(xx5, total))


HcmCounts = ListenerCounts
"""The former name of :class:`ListenerCounts`."""


@dataclass(frozen=True)
class CallOutcomes:
    """How a caller's apps saw their calls to one callee end (demo apps only; empty elsewhere).

    ``outcomes``: ``ok`` (2xx), ``timeout`` (the mesh's route timeout), ``overloaded`` (a circuit
    breaker's fast 503) or ``failed``; ``latency``: bins (ms) per outcome; ``reporting``: how many of the
    caller's instances reported any call.
    """

    status: dict[int, int]
    outcomes: dict[str, int]
    latency: dict[str, Bins]
    reporting: int

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())


@dataclass(frozen=True)
class UpstreamState:
    """One calling sidecar's view of one callee version at one snapshot: cumulative counters, gauges and
    per-host counts (a series of these shows what happened *while* a host was ejected)."""

    t: float
    counts: EdgeCounts
    ejections_active: float
    hosts: float | None
    healthy_hosts: float | None
    per_host: dict[str, HostCounts]


@dataclass(frozen=True)
class TlsCounts:
    """Handshakes on one side of mTLS connections, summed over sidecars (vocabulary: ``TLS_COUNTERS``)."""

    handshakes: float = 0.0
    errors: float = 0.0
    untrusted: float = 0.0
    wrong_identity: float = 0.0
    no_cert: float = 0.0

    def of(self, kind: str) -> float:
        """The counter that shows a refused bad peer of ``kind`` (a probe kind)."""
        return {"untrusted": self.untrusted, "wrong-identity": self.wrong_identity,
                "plaintext": self.errors}.get(kind, 0.0)


_TLS_FIELDS = {"tls_handshakes": "handshakes", "tls_errors": "errors", "tls_untrusted": "untrusted",
               "tls_wrong_identity": "wrong_identity", "tls_no_cert": "no_cert"}


@dataclass(frozen=True)
class MtlsEvidence:
    """What a window shows of the mesh's mTLS, beyond counters (:class:`~harness.mesh.base.CertificateView`).

    ``before``: each sidecar's certificates before the phase's faults were applied; ``after``: at the
    window's end (before the faults were removed). ``rotated``: the services whose certificates a
    ``cert-rotation`` of this window replaced (``gateway`` for the gateway's own). ``probes``: the bad
    peers the harness played against every instance at the window's end, None when none were made.
    ``unavailable`` says why certificates could not be read, when they could not.
    """

    mode: str
    rotated: tuple[str, ...] = ()
    before: Mapping[str, ServedCert] | None = None
    after: Mapping[str, ServedCert] | None = None
    probes: Sequence[PeerProbe] | None = None
    unavailable: str | None = None
    untrusted: tuple[tuple[str, str | None], ...] = ()
    """(service, version or None) given a leaf nobody trusts by a ``cert-untrusted`` in force in the window."""


def _merge_bins(target: dict[tuple[float, float], int], bins: Iterable[Sequence[float]]) -> None:
    for lower, width, count in bins:
        key = (float(lower), float(width))
        target[key] = target.get(key, 0) + int(count)


def _sorted_bins(merged: dict[tuple[float, float], int]) -> Bins:
    return [(lo, w, c) for (lo, w), c in sorted(merged.items()) if c > 0]


@dataclass
class WindowEvidence:
    name: str
    start: float
    end: float
    records: list[Record]
    counters: Snapshot
    nodes: dict[str, NodeInfo]
    policies: dict[str, ResolvedPolicy] = field(default_factory=dict)
    counter_span: float | None = None
    """Seconds between the two scrapes behind ``counters``, when it differs from the records' window (a
    window judged at a look ends half a second before its scrape, so that every client record is in)."""
    snapshots: Sequence[Snapshot] | None = None
    """The raw snapshots from the window's start to its end; by default the series its delta kept."""
    mtls: MtlsEvidence | None = None
    """Certificates and probes, for the ``mtls`` expectation (None where no experiment asked for them)."""
    promql: Callable[[str, float], list[Any]] | None = None
    """Evaluates a PromQL query at an instant (the metric source's Prometheus); None for other sources."""

    @property
    def duration(self) -> float:
        return max(self.end - self.start, 1e-9)

    @property
    def counters_duration(self) -> float:
        return max(self.counter_span, 1e-9) if self.counter_span is not None else self.duration

    @property
    def series(self) -> Sequence[Snapshot]:
        """The snapshots inside the window, oldest first (at least its two ends when the source kept them)."""
        return self.snapshots if self.snapshots is not None else self.counters.series

    def versions_of(self, service: str) -> list[str]:
        return sorted({n.version for n in self.nodes.values() if n.service == service})

    def nodes_of(self, service: str, version: str | None = None) -> list[str]:
        return [n.id for n in self.nodes.values() if n.service == service and version in (None, n.version)]

    # ------------------------------------------------------------------------------ the vocabulary
    @staticmethod
    def _read(snapshot: Snapshot, node: str) -> NodeQuantities:
        return snapshot.naming.read(snapshot.envoy.get(node, {}), snapshot.hist.get(node),
                                    snapshot.hosts.get(node))

    def quantities(self, node: str) -> NodeQuantities:
        """Everything one sidecar measured in this window, in the harness's vocabulary."""
        return self._read(self.counters, node)

    @staticmethod
    def _edge_counts(quantities: Iterable[NodeQuantities], callee: str, version: str | None) -> EdgeCounts:
        sums = dict.fromkeys(_EDGE_FIELDS, 0.0)
        for q in quantities:
            for up, counters in q.upstream.items():
                if up.callee == callee and version in (None, up.version):
                    for name in _EDGE_FIELDS:
                        sums[name] += counters.get(name, 0.0)
        return EdgeCounts(**sums)

    def edge(self, caller: str, callee: str, version: str | None = None) -> EdgeCounts:
        """The callers' upstream counters towards ``callee``: every version's, or one version's."""
        return self._edge_counts((self.quantities(n) for n in self.nodes_of(caller)), callee, version)

    def _listener(self, nodes: Iterable[str], listener: Listener) -> ListenerCounts:
        done = ok = xx5 = 0.0
        for node in nodes:
            c = self.quantities(node).listeners.get(listener, {})
            done += c.get("completed", 0.0)
            ok += c.get("1xx", 0.0) + c.get("2xx", 0.0) + c.get("3xx", 0.0)
            xx5 += c.get("5xx", 0.0)
        return ListenerCounts.of(done, ok, xx5)

    def inbound(self, service: str) -> ListenerCounts:
        """What ``service``'s sidecars answered their callers (every instance)."""
        return self._listener(self.nodes_of(service), Listener("inbound"))

    def answered(self, caller: str, callee: str) -> ListenerCounts:
        """What the mesh answered ``caller``'s apps on the edge to ``callee``: after retries, timeouts
        and breakers, as the caller's sidecars counted it. A gateway has no app: its edge is its ingress."""
        counts = self._listener(self.nodes_of(caller), Listener("outbound", callee))
        if counts.total == 0:
            gateways = [n for n in self.nodes_of(caller)
                        if any(up.callee == callee for up in self.quantities(n).upstream)]
            ingress = self._listener(gateways, Listener("ingress"))
            if ingress.total:
                return ingress
        return counts

    def inner_calls(self) -> ListenerCounts:
        """What every sidecar answered its own app's outbound calls (after retries): each call between
        services that failed inside the mesh, as the calling app saw it."""
        done = ok = xx5 = 0.0
        for node in self.nodes:
            for lis, c in self.quantities(node).listeners.items():
                if lis.side == "outbound":
                    done += c.get("completed", 0.0)
                    ok += c.get("1xx", 0.0) + c.get("2xx", 0.0) + c.get("3xx", 0.0)
                    xx5 += c.get("5xx", 0.0)
        return ListenerCounts.of(done, ok, xx5)

    @staticmethod
    def _tls(counters: Iterable[Mapping[str, float]]) -> TlsCounts:
        sums = dict.fromkeys(_TLS_FIELDS.values(), 0.0)
        for c in counters:
            for name, attr in _TLS_FIELDS.items():
                sums[attr] += c.get(name, 0.0)
        return TlsCounts(**sums)

    def tls_inbound(self, service: str | None = None) -> TlsCounts:
        """Handshakes callers made to the inbound side of ``service``'s sidecars (every sidecar's without
        one): whether they accepted the clients."""
        nodes = self.nodes_of(service) if service is not None else list(self.nodes)
        return self._tls(self.quantities(n).listeners.get(Listener("inbound"), {}) for n in nodes)

    def tls_upstream(self, callee: str | None = None) -> TlsCounts:
        """Handshakes every caller's sidecars made to ``callee`` (to any callee without one): whether the
        callers accepted the servers."""
        return self._tls(c for n in self.nodes for up, c in self.quantities(n).upstream.items()
                         if callee in (None, up.callee))

    def _latency(self, nodes: Iterable[str], listener: Listener) -> Bins:
        merged: dict[tuple[float, float], int] = {}
        for node in nodes:
            _merge_bins(merged, self.quantities(node).latency.get(listener, []))
        return _sorted_bins(merged)

    def inbound_latency(self, service: str) -> Bins:
        """Latency bins (ms) as ``service``'s sidecars measured their inbound requests."""
        return self._latency(self.nodes_of(service), Listener("inbound"))

    def version_inbound(self, service: str, version: str) -> ListenerCounts:
        """What the sidecars of one version of ``service`` answered their callers, summed over its
        instances: how a canary and its baseline are told apart anywhere in the call graph (the
        callers' records cannot say which version answered an inner call)."""
        return self._listener(self.nodes_of(service, version), Listener("inbound"))

    def version_inbound_latency(self, service: str, version: str) -> Bins:
        """Latency bins (ms) as the sidecars of one version of ``service`` measured their inbound
        requests, merged bin by bin over its instances."""
        return self._latency(self.nodes_of(service, version), Listener("inbound"))

    def edge_latency(self, caller: str, callee: str) -> Bins:
        """Latency bins (ms) as ``caller``'s sidecars measured its calls to ``callee``, retries included."""
        return self._latency(self.nodes_of(caller), Listener("outbound", callee))

    # ---------------------------------------------------------------------------- the demo apps
    def attempt_histogram(self, service: str, caller: str | None = None) -> dict[int, int]:
        """How many requests the callee's apps saw at each ``x-envoy-attempt-count``.

        With ``caller``, only the attempts made by that service's sidecars (another edge's retries into
        the same callee are not this edge's business).
        """
        out: dict[int, int] = {}
        for inst, stats in self.counters.apps.items():
            info = self.nodes.get(inst)
            if info is None or info.service != service:
                continue
            hist = stats.get("attempts", {}) if caller is None else stats.get("attempts_by_caller", {}).get(caller, {})
            for k, v in hist.items():
                out[int(k)] = out.get(int(k), 0) + int(v)
        return out

    def calls(self, caller: str, callee: str) -> CallOutcomes:
        """How ``caller``'s apps saw their calls to ``callee`` end in this window, summed over instances."""
        status: dict[int, int] = {}
        outcomes: dict[str, int] = {}
        latency: dict[str, dict[tuple[float, float], int]] = {}
        reporting = 0
        for inst, stats in self.counters.apps.items():
            info = self.nodes.get(inst)
            if info is None or info.service != caller:
                continue
            entry = (stats.get("calls") or {}).get(callee)
            if not entry:
                continue
            reporting += 1
            for code, n in (entry.get("status") or {}).items():
                status[int(code)] = status.get(int(code), 0) + int(n)
            for kind, n in (entry.get("outcomes") or {}).items():
                outcomes[kind] = outcomes.get(kind, 0) + int(n)
            for kind, bins in (entry.get("latency") or {}).items():
                _merge_bins(latency.setdefault(kind, {}), bins)
        return CallOutcomes(status, outcomes, {k: _sorted_bins(v) for k, v in latency.items()}, reporting)

    def max_inflight(self, service: str, version: str | None = None) -> dict[str, int]:
        """Per instance of ``service`` (or of one version): the most requests its app had in flight at
        once inside this window."""
        out: dict[str, int] = {}
        for inst, stats in self.counters.apps.items():
            info = self.nodes.get(inst)
            if info is not None and info.service == service and version in (None, info.version):
                out[inst] = int(stats.get("max_inflight", 0))
        return out

    # ------------------------------------------------------------------------- inside the window
    def upstream_series(self, caller: str, callee: str, version: str) -> dict[str, list[UpstreamState]]:
        """Per calling sidecar, its view of one callee version at each snapshot inside the window:
        cumulative counters, the ejection gauge, the host counts and each host's requests and state."""
        target = Upstream(callee, version)
        out: dict[str, list[UpstreamState]] = {}
        for node in self.nodes_of(caller):
            states = []
            for snap in self.series:
                if node not in snap.envoy:
                    continue  # the scrape missed this sidecar: no state rather than an invented one
                q = self._read(snap, node)
                gauges = q.upstream.get(target, {})
                states.append(UpstreamState(
                    t=snap.t,
                    counts=self._edge_counts([q], callee, version),
                    ejections_active=gauges.get("ejections_active", 0.0),
                    hosts=gauges.get("hosts"),
                    healthy_hosts=gauges.get("healthy_hosts"),
                    per_host=q.hosts.get(target, {}),
                ))
            if states:
                out[node] = states
        return out


@dataclass
class Evidence:
    """All windows of one experiment, by name (``baseline``, ``fault``, ``recovery``, ``all``)."""

    windows: dict[str, WindowEvidence]
    confidence: float
    window_confidence: dict[str, float] = field(default_factory=dict)
    """Windows judged at another confidence than the suite's: an adaptive phase's, whose looks share
    the suite's error budget."""

    def window(self, name: str) -> WindowEvidence:
        return self.windows[name]

    def confidence_for(self, name: str) -> float:
        return self.window_confidence.get(name, self.confidence)
