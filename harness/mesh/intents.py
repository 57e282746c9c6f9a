"""Intents: what the harness wants done to a mesh, said without saying how.

A fault or policy in a suite becomes one or more intents (``harness.faults``); a driver turns each into
its own mechanism (Envoy runtime keys, an interposed Toxiproxy, a VirtualService patch, a signal) and
hands back an exact undo. Intents are small frozen values, so they can be compared, printed in a plan
and tested without any mesh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Admission",
    "CertChange",
    "HttpFault",
    "Intent",
    "NetworkToxic",
    "Partition",
    "PolicyOverride",
    "ProcessSignal",
    "SplitChange",
]


@dataclass(frozen=True)
class HttpFault:
    """Answer ``abort_status`` instead of forwarding, or hold the request ``delay_s``, for ``percent`` of
    the requests to ``service`` (one ``version`` of it when given). ``at`` is where the mesh does it:
    ``target`` where the service receives traffic, ``caller`` on its callers' outbound side."""

    service: str
    percent: float
    version: str | None = None
    at: Literal["target", "caller"] = "target"
    abort_status: int | None = None
    delay_s: float | None = None

    @property
    def kind(self) -> str:
        return "http-abort" if self.abort_status is not None else "http-delay"


@dataclass(frozen=True)
class NetworkToxic:
    """A Toxiproxy toxic on the wire between ``caller``'s sidecar and ``callee``'s sidecars.

    ``attributes`` are the toxic's own (``latency``/``jitter`` in ms, ``rate`` in KB/s, ``timeout`` in
    ms), as Toxiproxy names them, so a driver backed by a real Toxiproxy passes them through unchanged.
    """

    caller: str
    callee: str
    toxic: Literal["latency", "bandwidth", "reset_peer", "timeout", "slow_close", "limit_data", "slicer"]
    attributes: tuple[tuple[str, float], ...] = ()
    stream: Literal["upstream", "downstream"] = "downstream"
    toxicity: float = 1.0


@dataclass(frozen=True)
class Partition:
    """No connection between a ``sides[0]`` service and a ``sides[1]`` service succeeds, either way:
    ``blackhole`` connections hang, ``reject`` connections are refused."""

    sides: tuple[tuple[str, ...], tuple[str, ...]]
    mode: Literal["blackhole", "reject"] = "blackhole"
    via: Literal["proxy", "network"] = "proxy"
    """``network``: the ``sides[0]`` instances leave the mesh network (a driver with containers)."""


@dataclass(frozen=True)
class ProcessSignal:
    """Stop (``kill``: SIGKILL) or freeze (``pause``: SIGSTOP) instances of a service's application.

    ``count`` instances, or ``percent`` of them (at least one), chosen by the driver deterministically
    (so a plan names the instances a run will hit). A killed instance with ``restart`` is started again
    by the undo, on the same port; a paused one is thawed by the undo.
    """

    service: str
    action: Literal["kill", "pause"]
    version: str | None = None
    count: int | None = None
    percent: float | None = None
    restart: bool = True

    def how_many(self, available: int) -> int:
        """How many of ``available`` instances this hits: ``count``, or ``percent`` of them (at least one);
        one when neither is given."""
        if self.count is not None:
            return self.count
        if self.percent is not None:
            return max(1, math.ceil(available * self.percent / 100))
        return 1


@dataclass(frozen=True)
class SplitChange:
    """Route ``service``'s traffic across its versions by ``weights`` (percent per version)."""

    service: str
    weights: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class PolicyOverride:
    """Set policy fields on the ``caller -> callee`` edge for one experiment, merged field by field over
    what is in force. ``fields`` is the JSON form of an EdgePolicy (``retries``, ``timeout``,
    ``circuit_breaker``, ``outlier_detection``)."""

    caller: str
    callee: str
    fields: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class CertChange:
    """Replace the certificates the sidecars of ``targets`` present, while traffic flows.

    * ``leaf``: the targets' leaves are re-issued by the mesh's CA (a routine rotation);
    * ``ca``: a new root is introduced through an overlap trust bundle (old + new) on every sidecar,
      every leaf of the mesh is re-issued from it, then the old root is retired: a root rotation
      concerns every workload, so ``targets`` only names whose new certificates matter to the
      experiment. ``hold`` is how long each stage stays in force before the next;
    * ``untrusted``: the targets (one ``version`` of a single target when given) present a leaf
      signed by a CA nobody trusts, with their own identity: only the signer is wrong.

    ``targets`` empty means every service of the mesh (and its gateway). Whatever the change, the undo
    gives back the exact material that was in force before it.
    """

    targets: tuple[str, ...]
    what: Literal["leaf", "ca", "untrusted"] = "leaf"
    version: str | None = None
    hold_s: float = 0.0

    @property
    def kind(self) -> str:
        return "cert-untrusted" if self.what == "untrusted" else "cert-rotation"


@dataclass(frozen=True)
class Admission:
    """Admit to ``service`` only callers that authenticate with mTLS as one of ``callers`` (the services the
    environment declares as its callers), for one experiment; with ``entry``, any caller that authenticates
    with mTLS (the gateway's service, whose callers, an ingress, are not declared).

    What ``mtls: strict`` declares, put in force for a refusal test (an ``mtls`` expectation with
    ``rejects``) on a mesh that does not hold it by itself: a Linkerd cluster admits plaintext callers
    unless told otherwise. Undone, the service admits what it admitted before.
    """

    service: str
    callers: tuple[str, ...]
    entry: bool = False

    @property
    def kind(self) -> str:
        return "admission"


Intent = HttpFault | NetworkToxic | Partition | ProcessSignal | SplitChange | PolicyOverride | CertChange | Admission
