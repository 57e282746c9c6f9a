"""Crash reports: what a bug in mesh-harness leaves for its report, without ever making things worse.

An internal error (an exception that is not a :class:`~harness.HarnessError`) is a bug of ours. The
user sees one line and the path of a report; the traceback goes into that report, never to the
terminal. Reports live under the state root (``$MESH_HARNESS_STATE``, else
``$XDG_STATE_HOME/mesh-harness``), one file per crash, created with ``O_EXCL`` so two runs never share
or overwrite one, and readable only by their owner (a traceback can hold paths and arguments).

Writing a report must never raise: a handler that crashes on a shared runner's read-only ``/tmp``
would replace the user's error with a second traceback. If the state root cannot be written, the
system temp directory is tried; if that fails too, the caller is told there is no report.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import sys
import tempfile
import traceback
from pathlib import Path

from harness._paths import state_root

__all__ = ["write_crash_report"]


def _report_text(exc: BaseException, argv: list[str]) -> str:
    from harness import __version__

    lines = [
        f"mesh-harness {__version__} internal error: {type(exc).__name__}: {exc}",
        f"time: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        f"command: {' '.join(argv)}",
        f"python: {sys.version.split()[0]} on {platform.platform()}",
        f"cwd: {os.getcwd()}",
        "",
        *traceback.format_exception(exc),
    ]
    return "\n".join(line.rstrip("\n") for line in lines) + "\n"


def _write_in(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    fd, name = tempfile.mkstemp(prefix=f"crash-{stamp}-{os.getpid()}-", suffix=".log", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return Path(name)


def write_crash_report(exc: BaseException, argv: list[str] | None = None) -> Path | None:
    """Write a report of ``exc`` and return its path; None if nowhere could take it. Never raises."""
    try:
        text = _report_text(exc, list(argv if argv is not None else sys.argv))
    except Exception:  # even formatting can fail (an exception whose __str__ raises)
        text = "mesh-harness internal error (the report itself could not be formatted)\n"
    candidates: list[Path] = []
    with contextlib.suppress(Exception):  # no HOME, say
        candidates.append(state_root() / "crash")
    with contextlib.suppress(Exception):
        candidates.append(Path(tempfile.gettempdir()) / f"mesh-harness-{os.getuid()}")
    for directory in candidates:
        try:
            return _write_in(directory, text)
        except Exception:
            continue
    return None
