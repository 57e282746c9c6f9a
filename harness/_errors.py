"""The exceptions mesh-harness raises, and what each one means for the user.

Every error a user can meet is a :class:`HarnessError`; the CLI and the pytest plugin turn them into a
message and an exit code, never a traceback::

    HarnessError
    ├── InputError        bad suite/environment/command line: FILE:LINE:COL problems, exit 2
    ├── MeshError         the mesh could not be started, reached or changed: exit 3
    │   └── ConfigRejected  Envoy refused a configuration we wrote
    ├── FaultError        a fault could not be applied or undone
    └── LoadError         the load generator failed (defined in harness.traffic.load)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ConfigRejected", "FaultError", "HarnessError", "InputError", "MeshError", "Problem"]


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
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class InputError(HarnessError):
    """The user's input is invalid; nothing has been applied or started."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("<command line>", 0, 0, "", problems)]
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


class FaultError(HarnessError):
    """A fault could not be applied or reverted."""
