"""What a mesh shows of its certificates, and what its listeners did with the harness's own probes.

Counters can say that handshakes failed; they cannot say which certificate a sidecar presents, nor
whether a peer the harness controls would be let in. These two records carry exactly that, in a form
every driver can fill (an Envoy's admin ``/certs``, ``istioctl proxy-config secret``, a probe pod), so
the ``mtls`` expectation judges rotations and refusals without knowing any mesh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["PROBE_KINDS", "PeerProbe", "ProbeKind", "ProbeOutcome", "ServedCert"]

ProbeKind = Literal["plaintext", "untrusted", "wrong-identity"]
PROBE_KINDS: tuple[ProbeKind, ...] = ("plaintext", "untrusted", "wrong-identity")
"""The bad peers the harness plays: no TLS at all; a client certificate from a CA nobody trusts; a
client certificate from the mesh's own CA with an identity outside the mesh's trust domain."""

ProbeOutcome = Literal["refused", "accepted", "no-tls", "unreachable", "no-answer"]
"""``refused``: the listener closed the connection (or sent a TLS alert) without answering; ``accepted``:
an HTTP response came back; ``no-tls``: the listener does not speak TLS, so no certificate could even
be presented; ``unreachable``: nothing listened; ``no-answer``: the probe timed out (a slow or frozen
instance) — neither of the last two says anything about mTLS."""


@dataclass(frozen=True)
class ServedCert:
    """The certificates one sidecar uses right now, by serial (lower-case hex, as Envoy prints them).

    ``leaf``: the serials of the leaf it presents (one, except for an instant during a swap, when
    contexts built before and after it coexist); ``trust``: the serials of the roots it shows as
    trusted (Envoy 1.40 lists every root of its bundle; older Envoys only the first).
    """

    leaf: tuple[str, ...]
    trust: tuple[str, ...]

    def to_json(self) -> dict[str, list[str]]:
        return {"leaf": list(self.leaf), "trust": list(self.trust)}


@dataclass(frozen=True)
class PeerProbe:
    """One connection the harness made to an instance's inbound listener as a bad peer, and its fate."""

    service: str
    instance: str
    kind: ProbeKind
    outcome: ProbeOutcome
    detail: str
    counted: bool | None = None
    """Whether the listener's own counter for this refusal (``ssl.fail_verify_error`` for an untrusted
    certificate, ``ssl.fail_verify_san`` for a wrong identity, ``ssl.connection_error`` for plaintext)
    rose across this one probe, read from that instance alone just before and after it; None when the
    driver cannot tell. It shows the refusal came from the certificate check, not a listener that
    merely hung up."""
