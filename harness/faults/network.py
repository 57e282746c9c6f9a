"""``net-latency``, ``net-bandwidth``, ``net-reset`` and ``partition``: faults on the wire of an edge.

They act between the caller's sidecar and the callee's sidecars, as a slow, narrow or broken network
would: the callers' own policy (timeouts, retries, breakers, ejection) meets them. Each becomes a
Toxiproxy toxic (the names and units of Toxiproxy's API, so a driver backed by a real Toxiproxy passes
them through), or, for a partition, the cut of every edge between two groups.
"""

from __future__ import annotations

from harness.mesh.intents import NetworkToxic, Partition
from harness.model.suite import NetBandwidth, NetLatency, NetReset
from harness.model.suite import Partition as PartitionFault

__all__ = ["network_intents", "partition_intents"]


def network_intents(fault: NetLatency | NetBandwidth | NetReset) -> list[NetworkToxic]:
    """One toxic on the edge.

    * ``net-latency``: every response on the edge is held back ``latency`` (± ``jitter``), Toxiproxy's
      ``latency`` toxic on the downstream stream: the added time a request sees end to end.
    * ``net-bandwidth``: both directions capped at ``rate_kbps`` kilobits per second (Toxiproxy counts
      kilobytes per second: ``rate_kbps / 8``, at least 1 KB/s).
    * ``net-reset``: connections are reset (TCP RST) ``after`` milliseconds of data (``reset_peer``).
    """
    edge = fault.edge
    if isinstance(fault, NetLatency):
        return [NetworkToxic(edge.from_, edge.to, "latency",
                             (("latency", round(fault.latency * 1000)), ("jitter", round(fault.jitter * 1000))))]
    if isinstance(fault, NetBandwidth):
        rate = max(1, round(fault.rate_kbps / 8))
        return [NetworkToxic(edge.from_, edge.to, "bandwidth", (("rate", rate),), stream=stream)
                for stream in ("downstream", "upstream")]
    return [NetworkToxic(edge.from_, edge.to, "reset_peer", (("timeout", round(fault.after * 1000)),))]


def partition_intents(fault: PartitionFault) -> list[Partition]:
    """No connection between a ``from`` service and a ``to`` service succeeds, either way."""
    return [Partition((tuple(fault.from_), tuple(fault.to)), fault.mode, fault.via)]
