"""The write-ahead journal: every change to a mesh is on disk, with its undo, before it is made.

Entries are JSON lines, fsync'd. ``do`` is written before the change, ``done`` after its undo has run.
Whatever has a ``do`` and no ``done`` is pending: the runner undoes it on every exit path, and
``mesh-harness cleanup`` undoes it after a crash or SIGKILL. Undos are idempotent, so replaying one that
had in fact run is harmless.

Reading back, every line is checked. A line torn by a crash mid-write is expected and skipped (that
change was never made): it is a prefix of what :meth:`Journal._append` writes, and the next append ends
it, so one can also sit in the middle. Any other line that is not an entry - other JSON, other text, a
``do`` without its undo - means the file was damaged, and pending undos read from it could be wrong or
missing: that is :class:`~harness._errors.StateCorrupt`, never a guess.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from harness._errors import StateCorrupt

__all__ = ["Journal", "PendingUndo"]

_REMEDY = ("its changes cannot be undone from it; stop the mesh with `mesh-harness down --env FILE` "
           "(changes die with its processes, a new `up` starts from the baseline), then remove the file")
_HEAD = '{"seq":'
"""How every line :meth:`Journal._append` writes begins (compact separators, ``seq`` first)."""


@dataclass(frozen=True)
class PendingUndo:
    seq: int
    undo: dict[str, Any]
    what: str


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    seq: int = Field(ge=1)


class _Do(_Entry):
    type: Literal["do"]
    what: str
    undo: dict[str, Any]

    @field_validator("undo")
    @classmethod
    def _has_op(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("op"), str):
            raise ValueError("an undo needs a string 'op'")
        return value


class _Done(_Entry):
    type: Literal["done"]


_ENTRY: TypeAdapter[_Do | _Done] = TypeAdapter(Annotated[_Do | _Done, Field(discriminator="type")])


_CUT_TOKEN = re.compile(r"t(r(ue?)?)?|f(a(l(se?)?)?)?|n(u(ll?)?)?|-?[0-9.eE+-]*")
"""What is left where the decoder gave up on a cut literal or number (``nu``, ``1.``, ``-``, nothing)."""


def _torn(text: str) -> bool:
    """A line a crash cut short: the start of an entry as written, whose JSON stops mid-way.

    Valid JSON is never torn; a line whose JSON breaks anywhere but at its end is damage, not a crash.
    """
    if not (text.startswith(_HEAD) or _HEAD.startswith(text)):
        return False
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        rest = text[exc.pos:]
        return (exc.msg.startswith("Unterminated string")
                or (exc.msg.startswith("Invalid \\uXXXX") and len(rest) < 6)
                or _CUT_TOKEN.fullmatch(rest) is not None)
    return False


_WORDS = {"union_tag_not_found": "no 'type'", "union_tag_invalid": "'type' is neither 'do' nor 'done'",
          "missing": "missing", "extra_forbidden": "unexpected key"}


def _entry(line: bytes) -> _Do | _Done | str | None:
    """The entry on ``line``; None if the line was torn by a crash; else what is wrong with it."""
    try:
        return _ENTRY.validate_json(line)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        if first["type"] != "json_invalid":
            where = ".".join(str(p) for p in first["loc"][1:])
            what = _WORDS.get(first["type"], first["msg"].removeprefix("Value error, "))
            return f"JSON but not a journal entry ({where + ': ' if where else ''}{what})"
    try:
        text = line.decode("ascii")  # json.dumps writes ASCII only
    except UnicodeDecodeError:
        return "not text written by mesh-harness"
    return None if _torn(text) else "not a JSON entry"


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def _corrupt(self, problem: str) -> StateCorrupt:
        return StateCorrupt(self.path, problem, _REMEDY)

    def _append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except (IsADirectoryError, PermissionError) as exc:
            raise self._corrupt(f"cannot be written ({exc.strerror})") from None
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line  # end a torn last line, or this entry is glued to it and lost
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _entries(self) -> list[_Do | _Done]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except IsADirectoryError:
            raise self._corrupt("is a directory, not a journal") from None
        except OSError as exc:
            raise self._corrupt(f"cannot be read ({exc.strerror or exc})") from None
        out: list[_Do | _Done] = []
        seen: set[int] = set()
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue  # the end of the file, or an empty line: nothing was recorded there
            entry = _entry(line)
            if entry is None:
                continue  # torn by a crash mid-write: that change was never made
            if isinstance(entry, str):
                raise self._corrupt(f"line {number} is {entry}")
            if isinstance(entry, _Do):
                if entry.seq in seen:
                    raise self._corrupt(f"line {number} records change {entry.seq} a second time")
                seen.add(entry.seq)
            out.append(entry)
        return out

    def record(self, what: str, undo: dict[str, Any]) -> int:
        """Journal an intended change; call BEFORE making it. Returns its sequence number."""
        seq = max((e.seq for e in self._entries()), default=0) + 1
        self._append({"seq": seq, "type": "do", "what": what, "undo": undo})
        return seq

    def done(self, seq: int) -> None:
        """Mark a change as undone (or as never made)."""
        self._append({"seq": seq, "type": "done"})

    def pending(self) -> list[PendingUndo]:
        """Changes still applied, newest first (the order to undo them in)."""
        entries = self._entries()
        finished = {e.seq for e in entries if isinstance(e, _Done)}
        todo = [PendingUndo(e.seq, dict(e.undo), e.what) for e in entries
                if isinstance(e, _Do) and e.seq not in finished]
        return sorted(todo, key=lambda p: p.seq, reverse=True)

    def clear_if_settled(self) -> None:
        if not self.pending() and self.path.exists():
            self.path.unlink()
