"""The write-ahead journal: every change to a mesh is on disk, with its undo, before it is made.

Entries are JSON lines, fsync'd. ``do`` is written before the change, ``done`` after its undo has run.
Whatever has a ``do`` and no ``done`` is pending: the runner undoes it on every exit path, and
``mesh-harness cleanup`` undoes it after a crash or SIGKILL. Undos are idempotent, so replaying one that
had in fact run is harmless.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Journal", "PendingUndo"]


@dataclass(frozen=True)
class PendingUndo:
    seq: int
    undo: dict[str, Any]
    what: str


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def _append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line  # end a torn last line, or this entry is glued to it and lost
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _entries(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a torn last line from a crash mid-write: the change was never made
                continue
        return out

    def record(self, what: str, undo: dict[str, Any]) -> int:
        """Journal an intended change; call BEFORE making it. Returns its sequence number."""
        seq = max((e.get("seq", 0) for e in self._entries()), default=0) + 1
        self._append({"seq": seq, "type": "do", "what": what, "undo": undo})
        return seq

    def done(self, seq: int) -> None:
        """Mark a change as undone (or as never made)."""
        self._append({"seq": seq, "type": "done"})

    def pending(self) -> list[PendingUndo]:
        """Changes still applied, newest first (the order to undo them in)."""
        entries = self._entries()
        finished = {e["seq"] for e in entries if e.get("type") == "done"}
        todo = [PendingUndo(e["seq"], e["undo"], e.get("what", "")) for e in entries
                if e.get("type") == "do" and e["seq"] not in finished]
        return sorted(todo, key=lambda p: p.seq, reverse=True)

    def clear_if_settled(self) -> None:
        if not self.pending() and self.path.exists():
            self.path.unlink()
