"""The exceptions mesh-harness raises, and what each one means for the user.

Every error a user can meet is a :class:`HarnessError`; the CLI and the pytest plugin turn them into a
message and an exit code, never a traceback::

    HarnessError
    ├── InputError        bad suite/environment/command line: FILE:LINE:COL problems, exit 2
    ├── MeshError         the mesh could not be started, reached or changed: exit 3
    │   ├── ConfigRejected  Envoy refused a configuration we wrote
    │   └── StateCorrupt    a file the harness wrote and reads back (state, journal, lock) is damaged
    ├── FaultError        a fault could not be applied or undone: exit 3
    └── LoadError         the load generator failed (defined in harness.traffic.load): exit 3

Exit 1 belongs to verdicts alone (an experiment failed, was inconclusive or aborted); a bug is exit 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ConfigRejected", "FaultError", "HarnessError", "InputError", "MeshError", "Problem", "StateCorrupt"]


COMMAND_LINE = "<command line>"
"""The ``file`` of a problem with the command line itself (an option, a name not found): no location."""


class HarnessError(Exception):
    """Base of every error mesh-harness reports to a user."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, located precisely enough to fix it."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        if self.file == COMMAND_LINE:
            return self.message
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class InputError(HarnessError):
    """The user's input is invalid; nothing has been applied or started."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(COMMAND_LINE, 0, 0, "", problems)]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    @classmethod
    def at(cls, file: str | Path, message: str, line: int = 1, col: int = 1, path: str = "") -> InputError:
        """A single problem at a known place."""
        return cls([Problem(str(file), line, col, path, message)])


class MeshError(HarnessError):
    """The mesh could not be started, reached or changed."""

    exit_code = 3


class ConfigRejected(MeshError):
    """An Envoy refused configuration the harness wrote (a harness bug, or an unsupported value)."""


class StateCorrupt(MeshError):
    """A file the harness wrote and reads back is damaged; the message names it and the way out.

    Raised instead of a KeyError deep inside ``status`` or ``cleanup``: the user gets which file, what
    is wrong with it, and what to do (``mesh-harness cleanup``, or remove the file).
    """

    def __init__(self, path: str | Path, problem: str, remedy: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {problem}; {remedy}")


class FaultError(HarnessError):
    """A fault could not be applied or reverted: the mesh could not be changed (exit 3)."""

    exit_code = 3
