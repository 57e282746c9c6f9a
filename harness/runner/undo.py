"""Carrying out journalled undos against a local mesh (shared by the runner and ``cleanup``)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from harness.faults.http import undo_runtime
from harness.mesh.local.driver import LocalMesh
from harness.runner.journal import Journal

__all__ = ["apply_undo", "rollback", "signals_deferred"]


def apply_undo(mesh: LocalMesh, undo: dict[str, Any]) -> None:
    op = undo["op"]
    if op == "runtime-clear":
        undo_runtime(mesh, undo["nodes"], undo["keys"])
    elif op == "policy-restore":
        mesh.set_override(undo["caller"], undo["callee"], undo.get("previous"))
    elif op == "split-restore":
        mesh.set_split(undo["service"], undo.get("previous"))
    else:
        raise ValueError(f"unknown undo operation {op!r} in the journal")


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends: a second Ctrl-C must not abandon a rollback."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def rollback(mesh: LocalMesh, journal: Journal) -> tuple[int, list[str]]:
    """Undo everything pending, newest first; return (actions run, errors). Never stops half-way."""
    with signals_deferred():
        return _rollback(mesh, journal)


def _rollback(mesh: LocalMesh, journal: Journal) -> tuple[int, list[str]]:
    actions, errors = 0, []
    for item in journal.pending():
        try:
            apply_undo(mesh, item.undo)
            journal.done(item.seq)
            actions += 1
        except Exception as exc:  # keep undoing the rest; report what failed
            errors.append(f"{item.what}: {exc}")
    journal.clear_if_settled()
    return actions, errors
