"""Carrying out journalled undos against a mesh (shared by the runner and ``cleanup``).

The journal holds each change's undo exactly as its driver wrote it (``MeshDriver.prepare``); replaying
one is the driver's business, so this module knows nothing of how any mesh works.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from harness.mesh.base import MeshDriver
from harness.runner.journal import Journal

__all__ = ["apply_undo", "rollback", "signals_deferred"]


def apply_undo(mesh: MeshDriver, undo: dict[str, Any]) -> None:
    """Replay one journalled undo through the mesh's driver."""
    mesh.undo(undo)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends: a second Ctrl-C must not abandon a rollback."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def rollback(mesh: MeshDriver, journal: Journal) -> tuple[int, list[str]]:
    """Undo everything pending, newest first; return (actions run, errors). Never stops half-way."""
    with signals_deferred():
        return _rollback(mesh, journal)


def _rollback(mesh: MeshDriver, journal: Journal) -> tuple[int, list[str]]:
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
