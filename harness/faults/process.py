"""``kill`` and ``pause``: instances of a service stop (SIGKILL) or freeze (SIGSTOP).

The application process is signalled, not its sidecar: callers then meet the mesh's own behaviour
towards a dead or frozen instance (connect failures, timeouts, ejection). ``kill`` with ``restart``
(the default) starts the instance again when the fault phase ends; without it, at the end of the
experiment (so the mesh is never left short of an instance).
"""

from __future__ import annotations

from harness.mesh.intents import ProcessSignal
from harness.model.suite import Kill, Pause

__all__ = ["process_intents"]


def process_intents(fault: Kill | Pause) -> list[ProcessSignal]:
    target = fault.target
    if isinstance(fault, Kill):
        return [ProcessSignal(target.service, "kill", target.version, fault.count, fault.percent, fault.restart)]
    return [ProcessSignal(target.service, "pause", target.version, fault.count, fault.percent)]
