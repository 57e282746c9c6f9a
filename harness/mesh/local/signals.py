"""``kill`` and ``pause`` on the local mesh: signals to the demo apps, never to their sidecars.

What callers then see is the mesh's own behaviour towards a dead or frozen instance (connect failures,
503 UF, timeouts, outlier ejection), exactly as with a crashed or stuck process in production. The
instances are chosen deterministically (the first by id), so ``plan`` names the ones a run hits.

``kill`` is SIGKILL; its undo starts the app again with the same configuration, on the same port, so
the sidecars' endpoints hold. ``pause`` is SIGSTOP; its undo is SIGCONT. While a fault holds, the state
records the instance as stopped on purpose, so the mesh still counts as running (``cleanup`` after a
crash then finds it up, and restarts or thaws what the journal says).
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING, Any

from harness._errors import FaultError
from harness._process import alive, frozen
from harness.mesh.base import Prepared
from harness.mesh.intents import ProcessSignal

if TYPE_CHECKING:
    from harness.mesh.local.driver import LocalMesh

__all__ = ["apply", "chosen", "prepare", "undo"]

_WAIT_S = 10.0


def chosen(mesh: LocalMesh, intent: ProcessSignal) -> list[str]:
    """The instances a signal fault hits: ``count`` of them, or ``percent`` (at least one), first by id."""
    from harness.mesh.local.changes import instance_ids

    ids = sorted(instance_ids(mesh, intent.service, intent.version))
    n = intent.how_many(len(ids))
    if n > len(ids):
        raise FaultError(f"{intent.action}: {n} instance(s) of {intent.service} asked for, it has {len(ids)}")
    return ids[:n]


def prepare(mesh: LocalMesh, intent: ProcessSignal) -> Prepared:
    ids = chosen(mesh, intent)
    what = ("SIGKILL" + (", started again when the fault ends" if intent.restart else ", started again at the end "
                         "of the experiment")) if intent.action == "kill" else "SIGSTOP, SIGCONT when the fault ends"
    return Prepared(intent, f"{intent.action} the app of {', '.join(ids)} ({what})",
                    {"op": "signal", "action": intent.action, "instances": ids},
                    {"op": "signal-clear", "action": intent.action, "instances": ids})


def _app(mesh: LocalMesh, instance: str) -> Any:
    for proc in mesh.state.procs:
        if proc.name == f"app:{instance}":
            return proc
    raise FaultError(f"no app process recorded for {instance}")


def apply(mesh: LocalMesh, do: dict[str, Any]) -> None:
    """Record the instances as stopped on purpose, then signal them and wait until the signal took hold."""
    action = do["action"]
    for instance in do["instances"]:
        mesh.state.stopped[instance] = "killed" if action == "kill" else "paused"
    mesh.save_state()
    for instance in do["instances"]:
        proc = _app(mesh, instance)
        mesh.signal_process(proc, signal.SIGKILL if action == "kill" else signal.SIGSTOP)
        _await(lambda p=proc: not alive(p) if action == "kill" else frozen(p),
               f"{instance} did not {'die' if action == 'kill' else 'stop'} after the signal")


def undo(mesh: LocalMesh, data: dict[str, Any]) -> None:
    """Thaw paused apps; start killed ones again (on their port) and wait until they answer."""
    for instance in data["instances"]:
        if mesh.state.stopped.get(instance) is None and data["action"] == "kill" and alive(_app(mesh, instance)):
            continue  # already restarted (an undo replayed by cleanup)
        proc = _app(mesh, instance)
        if data["action"] == "pause":
            if alive(proc):  # a paused app that died since has nothing to thaw (a kill's undo restarts it)
                mesh.signal_process(proc, signal.SIGCONT)
                _await(lambda p=proc: not frozen(p), f"{instance} did not resume")
        elif not alive(proc):
            mesh.restart_app(instance)
        mesh.state.stopped.pop(instance, None)
        mesh.save_state()


def _await(done: Any, message: str) -> None:
    deadline = time.monotonic() + _WAIT_S
    while not done():
        if time.monotonic() > deadline:
            raise FaultError(message)
        time.sleep(0.01)
