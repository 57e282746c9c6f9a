"""``http-abort`` and ``http-delay``: the mesh answers with a status, or holds the request, for a share of
the requests to a service.

Where it acts is part of the fault (SUITE-FORMAT §2): ``at: target`` (the default) where the service
receives traffic, so that every caller's retries, timeouts and breakers meet it as in an incident;
``at: caller`` on the callers' outbound side, where Istio's VirtualService faults act. How a mesh does it
(Envoy runtime keys, a VirtualService) is the driver's business.
"""

from __future__ import annotations

from harness.mesh.intents import HttpFault
from harness.model.suite import HttpAbort, HttpDelay

__all__ = ["http_intents"]


def http_intents(fault: HttpAbort | HttpDelay) -> list[HttpFault]:
    """One intent: the target (and its version, if given), the share, and what happens to a request."""
    target = fault.target
    if isinstance(fault, HttpAbort):
        return [HttpFault(target.service, fault.percent, target.version, fault.at, abort_status=fault.status)]
    return [HttpFault(target.service, fault.percent, target.version, fault.at, delay_s=fault.delay)]
