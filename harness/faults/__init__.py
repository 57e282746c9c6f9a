"""Faults: each kind of a suite turns into driver-neutral intents (``harness.mesh.intents``).

One module per fault family; the driver decides how to carry out each intent and how to undo it. A
fault kind with no module here is not implemented by this version (``runner.checks`` refuses it first).
"""

from __future__ import annotations

from harness.faults.http import http_intents
from harness.faults.mtls import cert_intents
from harness.faults.network import network_intents, partition_intents
from harness.faults.process import process_intents
from harness.faults.traffic import shift_steps
from harness.mesh.intents import Intent
from harness.model.suite import (
    CertRotation,
    CertUntrusted,
    Fault,
    HttpAbort,
    HttpDelay,
    Kill,
    NetBandwidth,
    NetLatency,
    NetReset,
    Partition,
    Pause,
    TrafficShift,
)

__all__ = ["IMPLEMENTED", "intents_for", "shift_steps"]

IMPLEMENTED = frozenset({"http-abort", "http-delay", "net-latency", "net-bandwidth", "net-reset", "partition",
                         "kill", "pause", "traffic-shift", "cert-rotation", "cert-untrusted"})
"""Fault kinds this version turns into intents (a driver may still refuse one: see its capabilities)."""


def intents_for(fault: Fault) -> list[Intent]:
    """The intents that make up ``fault``, in the order to apply them."""
    if isinstance(fault, HttpAbort | HttpDelay):
        return list(http_intents(fault))
    if isinstance(fault, NetLatency | NetBandwidth | NetReset):
        return list(network_intents(fault))
    if isinstance(fault, Partition):
        return list(partition_intents(fault))
    if isinstance(fault, Kill | Pause):
        return list(process_intents(fault))
    if isinstance(fault, TrafficShift):
        return [change for change, _ in shift_steps(fault)]  # applied one at a time by the runner
    if isinstance(fault, CertRotation | CertUntrusted):
        return list(cert_intents(fault))
    raise NotImplementedError(f"fault kind {fault.kind} is not implemented")
