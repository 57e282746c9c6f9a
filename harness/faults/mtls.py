"""``cert-rotation`` and ``cert-untrusted``: the certificates of the mesh change while traffic flows.

A rotation is routine in a mesh (Istio re-issues workload certificates every day, roots more rarely), and
the promise is that nobody notices: no handshake fails, no request is dropped. ``what: leaf`` re-issues
the targets' leaves from the mesh's CA; ``what: ca`` introduces a new root through an overlap trust
bundle, re-issues every leaf from it, then retires the old root, each stage confirmed on every sidecar.
``cert-untrusted`` is the opposite promise: a workload with a certificate nobody trusts is refused by
every peer, and its callers see it fail.

Both are applied by the runner ``at`` into the fault phase (a rotation at the phase's first instant would
fall in the settle time no window reads); how a mesh issues and publishes certificates is its driver's
business.
"""

from __future__ import annotations

from harness.mesh.intents import CertChange
from harness.model.suite import CertRotation, CertUntrusted

__all__ = ["cert_intents"]


def cert_intents(fault: CertRotation | CertUntrusted) -> list[CertChange]:
    """One change: the targets (empty: every service and the gateway), what is replaced, and for a root
    rotation how long each of its stages is held."""
    if isinstance(fault, CertUntrusted):
        return [CertChange((fault.target.service,), "untrusted", fault.target.version)]
    return [CertChange(tuple(fault.services or ()), fault.what, hold_s=fault.hold)]
