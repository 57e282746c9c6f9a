"""``traffic-shift``: the split of a service moves through steps during the fault phase (a progressive
canary, as Flagger drives one, and then checked as Flagger never does: each step's split is measured).

Each step is one route change, journalled and confirmed on every calling Envoy before its hold starts;
the runner holds it, keeps the step's evidence apart (``step: N``), and with ``on_fail: halt`` stops the
shift at the first step whose expectations fail. The undo of every step restores the split before it,
so rolling back all of them returns the route to the environment's split.
"""

from __future__ import annotations

from harness.mesh.intents import SplitChange
from harness.model.suite import TrafficShift

__all__ = ["shift_steps"]


def shift_steps(fault: TrafficShift) -> list[tuple[SplitChange, float]]:
    """Each step as (the route change, how long it is held in seconds), in order."""
    return [(SplitChange(fault.service, tuple(step.split.items())), step.hold) for step in fault.steps]
