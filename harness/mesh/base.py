"""The one interface between mesh-harness and a mesh: what the runner, faults, plan, cleanup, metrics and
the benchmarks may ask of any mesh driver (local Envoys, docker compose, Istio, Linkerd, Consul).

In the spirit of httpx's transport: a small typed protocol, the strict point of cut-off. The runner never
learns how a mesh does what it asks; a driver never learns what a verdict is.

A change goes through three steps, so that it is on disk before it touches the mesh::

    prepared = driver.prepare(intent)             # decides everything; touches nothing
    seq = journal.record(prepared.description, prepared.undo)   # the journal lives in driver.state_dir
    activation_ms = driver.apply(prepared)        # makes the change, returns once it is in force
    ...
    driver.undo(prepared.undo)                    # exact, idempotent; also from a fresh process (cleanup)

``undo`` is plain JSON: ``mesh-harness cleanup`` replays it after a crash, in a process that has only the
environment file and the journal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from harness.mesh.intents import Intent
from harness.mesh.policy import ResolvedPolicy
from harness.metrics.snapshot import NodeInfo, Snapshot
from harness.metrics.tls import PeerProbe, ServedCert

if TYPE_CHECKING:
    from harness.model.environment import Environment

__all__ = ["GATEWAY", "AdmissionControl", "Capabilities", "CertificateView", "MeshDriver", "MetricSource", "Prepared",
           "Refusal", "Topology"]

GATEWAY = "gateway"
"""The node id and caller name of the gateway, where load enters the mesh."""

EVIDENCE_KINDS = frozenset({"client", "sidecar-counters", "sidecar-latency", "attempt-counts", "app-inflight",
                            "ejections", "certificates", "peer-probes"})
"""What a driver's metric source can show: client records always; the rest where the mesh exports them.
``certificates`` and ``peer-probes`` are what a :class:`CertificateView` driver shows of its mTLS."""


@dataclass(frozen=True)
class Refusal:
    """Why a driver cannot do something, for a message at the suite's FILE:LINE."""

    reason: str


@dataclass(frozen=True)
class Capabilities:
    """What a driver can do, declared once, checked by ``validate --env``, ``plan`` and ``run`` before
    anything is applied, and printed by ``mesh-harness capabilities``.

    ``refused`` maps a fault kind (or ``kind.field``) to the reason the mesh cannot do it, so the
    message says why (Istio has no L4 latency) instead of "not supported".
    """

    mesh: str
    faults: frozenset[str]
    http_placements: frozenset[str] = frozenset({"target"})
    policy_fields: frozenset[str] = frozenset()
    evidence: frozenset[str] = frozenset({"client"})
    refused: Mapping[str, str] = field(default_factory=dict)
    fault_options: frozenset[str] = frozenset()
    """Values of fault fields beyond their defaults that this mesh can do, as ``kind.field=value``
    (``partition.via=network``); a value not listed is refused, with the reason from ``refused`` if any."""

    def refusal(self, kind: str) -> Refusal | None:
        """Why this mesh cannot do fault ``kind``, or None when it can."""
        if kind in self.faults:
            return None
        reason = self.refused.get(kind) or f"the {self.mesh} mesh driver does not implement it yet"
        return Refusal(reason)

    def to_json(self) -> dict[str, Any]:
        return {"mesh": self.mesh, "faults": sorted(self.faults), "http_placements": sorted(self.http_placements),
                "policy_fields": sorted(self.policy_fields), "evidence": sorted(self.evidence),
                "fault_options": sorted(self.fault_options), "refused": dict(sorted(self.refused.items()))}


@dataclass(frozen=True)
class Prepared:
    """A change decided but not made: what ``plan`` prints, what the journal keeps, what ``apply`` does.

    ``do`` and ``undo`` are JSON-able; ``do`` is the driver's own instruction (runtime keys and nodes,
    the instances to signal), ``undo`` its exact inverse.
    """

    intent: Intent
    description: str
    do: dict[str, Any]
    undo: dict[str, Any]
    stages: tuple[str, ...] = ()
    """A change made in stages (a root rotation), each confirmed before the next: what ``plan`` shows."""


@dataclass(frozen=True)
class Topology:
    """The mesh as deployed: every node that exports metrics, and where load enters."""

    nodes: tuple[NodeInfo, ...]
    gateway_url: str

    def of(self, service: str, version: str | None = None) -> list[NodeInfo]:
        return [n for n in self.nodes if n.service == service and version in (None, n.version)]


@runtime_checkable
class MetricSource(Protocol):
    """Counter snapshots of a running mesh (Envoy admin, Prometheus...), in the harness's vocabulary."""

    node_info: dict[str, NodeInfo]

    def start(self) -> None:
        """Begin background scraping at the environment's interval."""

    def scrape(self) -> Snapshot:
        """One snapshot now (windows start and end exactly at phase boundaries)."""

    def close(self) -> None:
        """Stop scraping and release connections."""


@runtime_checkable
class MeshDriver(Protocol):
    """A mesh the harness can start (or connect to), change, observe and restore."""

    name: str
    """The environment's ``mesh:`` value."""
    capabilities: Capabilities
    state_dir: Path
    """Where the driver keeps what later commands (status, cleanup) must find; also holds the journal."""

    @classmethod
    def for_environment(cls, env: Environment, env_path: Path, state_dir: Path | None = None) -> Self:
        """The driver bound to ``env`` (read from ``env_path``); nothing is started or contacted."""

    # --------------------------------------------------------------------------- lifecycle
    def up(self, timeout_s: float = 30.0, on_event: Callable[[str], None] | None = None) -> str:
        """Start the mesh (local meshes) or verify and connect (existing ones); return the gateway URL."""

    def down(self) -> list[str]:
        """Stop what ``up`` started; return the names of anything that would not stop."""

    def is_up(self) -> bool:
        """Is the mesh running and reachable?"""

    def status(self) -> dict[str, Any]:
        """A JSON-able account of the mesh (``running`` at least)."""

    def close(self) -> None:
        """Release connections held by this object (the mesh keeps running)."""

    # --------------------------------------------------------------------------- topology and metrics
    def topology(self) -> Topology:
        """Nodes and gateway URL of the running mesh."""

    def policy(self, caller: str, callee: str) -> ResolvedPolicy:
        """The policy in force on an edge (declared, overrides, this mesh's defaults): what the retry
        oracle and the timeout and breaker expectations compare against."""

    def metric_source(self, interval_s: float) -> MetricSource:
        """A source of snapshots of this mesh (not started)."""

    # --------------------------------------------------------------------------- changes
    def prepare(self, intent: Intent) -> Prepared:
        """Decide how to carry out ``intent`` and its exact undo; touch nothing. Raises FaultError when
        the intent cannot be done on this mesh (a target with no instance, say)."""

    def apply(self, prepared: Prepared) -> float:
        """Make the change and return once it is in force, with how long that took (ms)."""

    def undo(self, undo: dict[str, Any]) -> None:
        """Reverse a change from its JSON undo. Idempotent: undoing twice, or undoing a change that was
        never made (a crash between journal and apply), is harmless."""

    def fingerprint(self) -> dict[str, Any]:
        """Everything a change could alter, per node (for the contract test: apply, undo, compare)."""

    def logs_hint(self, part: str | None = None) -> str:
        """Where to read the logs of the mesh, or of one ``part`` (a node id, ``toxiproxy``, ``prometheus``):
        a path, or the command that shows them, for error messages."""


@runtime_checkable
class CertificateView(Protocol):
    """What a driver whose capabilities' evidence holds ``certificates`` and ``peer-probes`` offers.

    Counters show that handshakes failed; only the mesh can say which certificate each sidecar presents
    (a rotation's proof) and whether a bad peer the harness plays is let in (a refusal's proof). Apart
    from :class:`MeshDriver`, so that a driver that cannot look says so by not declaring the evidence,
    and the suite is refused before anything runs.
    """

    def served_certificates(self) -> dict[str, ServedCert]:
        """Per node id: the serials of the leaf it presents and of the roots it trusts, right now."""

    def probe_peers(self, service: str) -> list[PeerProbe]:
        """Connect to each instance of ``service`` as each bad peer (plaintext, untrusted, wrong identity)
        and report what its inbound side did. Makes no change to the mesh."""


@runtime_checkable
class AdmissionControl(Protocol):
    """What a driver offers whose mesh does not by itself refuse the bad peers ``mtls: strict`` declares
    refused (Linkerd admits plaintext callers unless a policy says otherwise).

    For an experiment that tests refusals (an ``mtls`` expectation with ``rejects``), the runner asks for
    the changes that put the environment's declared admission in force, applies them before the baseline
    like any policy change (journalled, undone after the recovery), and the probes then test them.
    """

    def admission(self, rejects: frozenset[str]) -> list[Intent]:
        """The changes to make, one per service, for a test that ``rejects`` these bad peers; none when the
        mesh is to be tested as it is (or none of them can be played on it)."""
