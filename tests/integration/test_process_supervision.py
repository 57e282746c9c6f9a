"""Process supervision of the local mesh: identity by PID and start time, group signals, zombies.

The processes here are trivial ones each test starts itself (``sleep``, a short python), never a mesh.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from meshtools import step_the_clock

from harness import _process
from harness._process import (
    Proc,
    alive,
    find_processes,
    from_ticks,
    frozen,
    same_start,
    send_signal,
    spawn,
    start_of,
    stop_all,
)

__all__: list[str] = []

IGNORE_TERM = 'trap "" TERM; sleep 30 & wait'
"""A shell (and its sleep) that shrug off SIGTERM: only SIGKILL ends them."""


def gone(pid: int) -> bool:
    """No process under ``pid`` any more, or only its zombie."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(name="started")
def _started(tmp_path: Path) -> Iterator[list[Proc]]:
    """Processes a test spawned; whatever is left is SIGKILLed (by group) and reaped afterwards."""
    procs: list[Proc] = []
    yield procs
    stop_all(procs, grace_s=0.0)


def sleeper(tmp_path: Path, started: list[Proc], *, keeper: bool = False, argv: list[str] | None = None) -> Proc:
    proc = spawn("sleeper", argv or ["sleep", "30"], tmp_path / "logs" / "sleep.log", keeper=keeper)
    started.append(proc)
    return proc


class TestIdentity:
    def test_started_is_psutil_create_time(self, tmp_path: Path, started: list[Proc]) -> None:
        """A spawned process is recorded with psutil's create_time, and is alive by that identity."""
        proc = sleeper(tmp_path, started)
        assert proc.started == psutil.Process(proc.pid).create_time()
        start = start_of(proc.pid)
        assert start is not None
        assert start.created == proc.started
        assert alive(proc)

    def test_recycled_pid_is_not_ours(self, tmp_path: Path, started: list[Proc]) -> None:
        """The same PID with another start time (a recycled PID) is not alive for us."""
        proc = sleeper(tmp_path, started)
        stranger = Proc(proc.name, proc.pid, proc.started + 1.0, proc.log)
        assert not alive(stranger)

    def test_recycled_pid_is_never_signalled(self, tmp_path: Path, started: list[Proc]) -> None:
        """stop_all on a record whose start time does not match leaves the process running."""
        proc = sleeper(tmp_path, started)
        stranger = Proc(proc.name, proc.pid, proc.started - 5.0, proc.log)
        assert stop_all([stranger], grace_s=0.2) == []
        time.sleep(0.1)
        assert psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE
        assert alive(proc)

    def test_missing_process_has_no_start_time(self) -> None:
        """start_of a PID that does not exist is None, and such a record is not alive."""
        child = subprocess.Popen(["true"])
        child.wait()
        assert start_of(child.pid) is None
        assert not alive(Proc("gone", child.pid, 0.0, ""))

    @pytest.mark.parametrize("pid", [0, 1, -1])
    def test_init_and_own_group_are_never_ours(self, pid: int) -> None:
        """PIDs 1, 0 and negatives (init, our own group, every process) are never treated as ours."""
        real = start_of(pid) if pid > 0 else None
        assert not alive(Proc("x", pid, 0.0, "") if real is None else Proc.started_at("x", pid, real, ""))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the start after boot is compared on Linux")
class TestClockStep:
    @pytest.mark.parametrize("seconds", [1.0, -1.0, 3600.0])
    def test_our_processes_stay_ours(self, tmp_path: Path, started: list[Proc], monkeypatch: pytest.MonkeyPatch,
                                     seconds: float) -> None:
        """After the boot time moved, a running mesh process is still alive, can be paused, thawed and
        stopped (in CI every app of a running mesh once turned "not running" at once)."""
        proc = sleeper(tmp_path, started)
        before = start_of(proc.pid)
        step_the_clock(monkeypatch, seconds)
        after = start_of(proc.pid)
        assert before is not None
        assert after is not None
        assert after.created == pytest.approx(before.created + seconds, abs=1e-3)
        assert alive(proc)
        assert send_signal(proc, signal.SIGSTOP)
        assert wait_for(lambda: frozen(proc))
        assert send_signal(proc, signal.SIGCONT)
        assert wait_for(lambda: not frozen(proc))
        assert stop_all([proc], grace_s=2.0) == []
        assert gone(proc.pid)

    def test_a_recycled_pid_is_still_a_stranger(self, tmp_path: Path, started: list[Proc],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        """A record a second off after boot is another process, whatever the clock did."""
        proc = sleeper(tmp_path, started)
        step_the_clock(monkeypatch, 1.0)
        assert not alive(replace(proc, started=proc.started + 1.0))
        assert stop_all([replace(proc, started=proc.started - 1.0)], grace_s=0.2) == []
        assert alive(proc)

    def test_another_boot_is_never_ours(self, tmp_path: Path, started: list[Proc]) -> None:
        """A record of another boot (the state directory outlives a reboot) is a stranger, even at the same
        PID and the same start after boot."""
        proc = sleeper(tmp_path, started)
        assert proc.boot_id is not None
        other = "00000000-0000-0000-0000-000000000000"
        assert not alive(replace(proc, boot_id=other))
        assert stop_all([replace(proc, boot_id=other)], grace_s=0.2) == []
        assert alive(proc)
        assert replace(proc, boot_id=other).key != proc.key

    def test_one_key_on_either_side_of_a_step(self, tmp_path: Path, started: list[Proc],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
        """Two records of one process, read before and after a step, have one key (salvage merges them)."""
        marker = str(tmp_path / "apps" / "keyed.json")
        mine = sleeper(tmp_path, started, argv=[sys.executable, "-c", "import time; time.sleep(30)",
                                               "--config", marker])
        step_the_clock(monkeypatch, 1.0)
        (found,) = find_processes(lambda argv: "mine" if marker in argv else None)
        assert found.started == pytest.approx(mine.started + 1.0, abs=1e-3)
        assert found.key == mine.key

    def test_a_record_without_boot_time_compares_create_time(self, tmp_path: Path, started: list[Proc],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
        """An older state file's record has no boot time (or no boot id): its process is ours until the clock
        steps, then left alone (never a stranger signalled), as before."""
        proc = sleeper(tmp_path, started)
        for older in (Proc(proc.name, proc.pid, proc.started, proc.log), replace(proc, boot_id=None)):
            assert alive(older)
            with monkeypatch.context() as patch:
                step_the_clock(patch, 1.0)
                assert not alive(older)
                assert alive(proc)

    def test_find_processes_records_the_boot_time(self, tmp_path: Path, started: list[Proc],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        """A process found by its command line (salvage) is recorded with its boot time and id too."""
        marker = str(tmp_path / "apps" / "stepped.json")
        mine = sleeper(tmp_path, started, argv=[sys.executable, "-c", "import time; time.sleep(30)",
                                               "--config", marker])
        (found,) = find_processes(lambda argv: "mine" if marker in argv else None)
        assert found.boot == psutil.boot_time()
        assert found.boot_id == mine.boot_id
        assert found.boot_id is not None
        step_the_clock(monkeypatch, -2.0)
        assert alive(found)
        assert alive(mine)


def wait_for(done: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class TestZombies:
    def test_zombie_counts_as_dead(self) -> None:
        """An exited child nobody has reaped yet (a zombie) is not alive, though its identity matches."""
        child = subprocess.Popen(["true"])
        try:
            handle = psutil.Process(child.pid)
            proc = Proc("z", child.pid, handle.create_time(), "")
            deadline = time.monotonic() + 3
            while handle.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
                time.sleep(0.01)
            assert handle.status() == psutil.STATUS_ZOMBIE
            assert not alive(proc)
        finally:
            child.wait()

    def test_a_zombie_nobody_reaps_is_stopped_at_once(self, tmp_path: Path, started: list[Proc]) -> None:
        """A process that dies into a zombie its parent never reaps (not our child) ends the wait at once."""
        parent = sleeper(tmp_path, started, argv=["/bin/sh", "-c", "sleep 30 & exec sleep 31"])
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            handle = psutil.Process(parent.pid)
            if handle.cmdline()[:1] == ["sleep"] and handle.children():
                break
            time.sleep(0.01)
        (child,) = psutil.Process(parent.pid).children()
        proc = Proc("child", child.pid, child.create_time(), "")
        before = time.monotonic()
        assert stop_all([proc], grace_s=5.0) == []
        assert time.monotonic() - before < 2.0
        assert child.status() == psutil.STATUS_ZOMBIE


class TestStopAll:
    def test_sigterm_stops_and_reaps(self, tmp_path: Path, started: list[Proc]) -> None:
        """SIGTERM ends a plain process, and stop_all reaps its zombie (our child) too."""
        proc = sleeper(tmp_path, started)
        assert stop_all([proc], grace_s=2.0) == []
        with pytest.raises(psutil.NoSuchProcess):
            psutil.Process(proc.pid).status()

    def test_signals_the_whole_group(self, tmp_path: Path, started: list[Proc]) -> None:
        """The signal goes to the group the recorded leader heads: the keeper shell's child dies too."""
        proc = sleeper(tmp_path, started, keeper=True)
        deadline = time.monotonic() + 3
        while not psutil.Process(proc.pid).children() and time.monotonic() < deadline:
            time.sleep(0.01)
        (child,) = psutil.Process(proc.pid).children()
        assert os.getpgid(child.pid) == proc.pid
        assert stop_all([proc], grace_s=2.0) == []
        assert wait_gone(child.pid)

    def test_sigkill_after_the_grace_period(self, tmp_path: Path, started: list[Proc]) -> None:
        """A group that ignores SIGTERM is SIGKILLed once the grace period is over, and nothing resisted."""
        proc = sleeper(tmp_path, started, argv=["/bin/sh", "-c", IGNORE_TERM])
        time.sleep(0.2)  # let the shell install its trap
        before = time.monotonic()
        assert stop_all([proc], grace_s=0.5) == []
        assert time.monotonic() - before >= 0.5
        assert gone(proc.pid)

    def test_two_records_of_one_process_signal_it_once(self, tmp_path: Path, started: list[Proc],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
        """The record of an older state and one found by command line name one process: one SIGTERM."""
        proc = sleeper(tmp_path, started)
        sent: list[tuple[int, int]] = []
        real = _process._signal
        monkeypatch.setattr(_process, "_signal", lambda h, sig: (sent.append((h.pid, sig)), real(h, sig))[1])
        assert stop_all([proc, replace(proc, boot=None, boot_id=None)], grace_s=2.0) == []
        assert sent == [(proc.pid, signal.SIGTERM)]

    def test_returns_at_once_when_all_are_dead(self, tmp_path: Path, started: list[Proc]) -> None:
        """Processes that obey SIGTERM do not make stop_all wait for the whole grace period."""
        procs = [sleeper(tmp_path, started) for _ in range(3)]
        before = time.monotonic()
        assert stop_all(procs, grace_s=10.0) == []
        assert time.monotonic() - before < 5.0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="older state files exist only on Linux")
class TestOlderStateFiles:
    def test_clock_ticks_convert_to_create_time(self, tmp_path: Path, started: list[Proc]) -> None:
        """A start time recorded in clock ticks (/proc/PID/stat field 22) is the same start for psutil."""
        proc = sleeper(tmp_path, started)
        raw = Path(f"/proc/{proc.pid}/stat").read_text()
        ticks = int(raw[raw.rfind(")") + 2:].split()[19])
        assert same_start(from_ticks(ticks), proc.started)
        assert alive(Proc(proc.name, proc.pid, from_ticks(ticks), proc.log))

    def test_a_tick_later_is_another_process(self, tmp_path: Path, started: list[Proc]) -> None:
        """One clock tick of difference is enough to tell a recycled PID from ours."""
        proc = sleeper(tmp_path, started)
        raw = Path(f"/proc/{proc.pid}/stat").read_text()
        ticks = int(raw[raw.rfind(")") + 2:].split()[19])
        assert not alive(Proc(proc.name, proc.pid, from_ticks(ticks + 1), proc.log))


class TestFindProcesses:
    def test_finds_only_what_the_matcher_names(self, tmp_path: Path, started: list[Proc]) -> None:
        """find_processes returns this user's processes the matcher names, with their identity."""
        marker = str(tmp_path / "apps" / "mine.json")
        mine = sleeper(tmp_path, started, argv=[sys.executable, "-c", "import time; time.sleep(30)",
                                               "--config", marker])
        other = sleeper(tmp_path, started)
        found = find_processes(lambda argv: "mine" if marker in argv else None)
        assert [(p.name, p.pid) for p in found] == [("mine", mine.pid)]
        assert same_start(found[0].started, mine.started)
        assert other.pid not in [p.pid for p in found]
