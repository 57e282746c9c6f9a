"""kill_leftover against real processes standing for Locust.

The pid file's validation is in tests/unit/traffic/test_load_pidfile.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from meshtools import step_the_clock

from harness._errors import StateCorrupt
from harness._process import start_of
from harness.traffic import kill_leftover
from harness.traffic import load as load_mod

__all__: list[str] = []

SLEEP = "import time; time.sleep(30)"

LEADER_EXITS_FIRST = ("import ctypes, threading, time\n"
                      "threading.Thread(target=time.sleep, args=(1.0,)).start()\n"
                      "ctypes.CDLL(None).pthread_exit(None)\n")

"""A process whose main thread (the leader) exits while another thread runs on for a second."""

@pytest.fixture(name="spawned")
def _spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Children a test starts; killed and reaped afterwards, whatever the test did."""
    children: list[subprocess.Popen[bytes]] = []
    yield children
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()

def fake_locust(spawned: list[subprocess.Popen[bytes]], code: str = SLEEP, own_group: bool = True,
                name: str = "locust") -> psutil.Process:
    """A process whose command line names ``name``, returned once it does: Popen returns when the exec
    began, before the kernel set the new argv (``cmdline()`` is empty about 1 time in 200 then)."""
    child = subprocess.Popen([sys.executable, "-c", code, name], start_new_session=own_group)
    spawned.append(child)
    handle = psutil.Process(child.pid)
    deadline = time.monotonic() + 5
    while name not in handle.cmdline():
        assert time.monotonic() < deadline, f"{child.pid} never showed {name!r} in its command line"
        time.sleep(0.005)
    return handle

def running(handle: psutil.Process) -> bool:
    return handle.is_running() and handle.status() != psutil.STATUS_ZOMBIE

def assert_names_file_and_remedy(exc: StateCorrupt, pid_file: Path) -> None:
    assert exc.exit_code == 3
    assert exc.path == str(pid_file)
    assert "pgrep -af locust" in str(exc)
    assert f"remove {pid_file}" in str(exc)


class TestLeaderThreads:
    def test_leader_is_dead_only_when_its_threads_are_gone(self, spawned: list[subprocess.Popen[bytes]]) -> None:
        """A zombie leader whose other threads still run is not dead yet; it is once they are gone."""
        handle = fake_locust(spawned, code=LEADER_EXITS_FIRST)
        deadline = time.monotonic() + 3
        while handle.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handle.num_threads() > 1
        assert load_mod._wait_dead(handle, 0.2) is False
        assert load_mod._wait_dead(handle, 5.0) is True
        assert handle.num_threads() == 1


class TestKill:
    def test_kills_the_recorded_group(self, tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
        """A live locust leader whose PID and start time match is killed, and the PID file removed."""
        handle = fake_locust(spawned)
        (tmp_path / "locust.pid").write_text(f"{handle.pid} {handle.create_time()!r}\n")
        assert kill_leftover(tmp_path) is True
        assert not running(handle)
        assert not (tmp_path / "locust.pid").exists()

    @pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the start after boot is compared on Linux")
    def test_a_clock_step_keeps_the_record(self, tmp_path: Path, spawned: list[subprocess.Popen[bytes]],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
        """A PID file with the boot time still names its locust after the wall clock stepped (Linux: the
        start after boot is compared), and a start a second off after boot still does not."""
        handle = fake_locust(spawned)
        start = start_of(handle.pid)
        assert start is not None
        boot = f"{start.boot!r} {start.boot_id or '-'}"
        (tmp_path / "locust.pid").write_text(f"{handle.pid} {start.created - 1.0!r} {boot}\n")
        step_the_clock(monkeypatch, 1.0)
        assert kill_leftover(tmp_path) is False
        assert running(handle)
        (tmp_path / "locust.pid").write_text(f"{handle.pid} {start.created!r} {boot}\n")
        assert kill_leftover(tmp_path) is True
        assert not running(handle)

    def test_no_boot_id_compares_the_start_time(self, tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
        """A PID file whose boot id is ``-`` (a system without one) names its locust by ``create_time``."""
        handle = fake_locust(spawned)
        start = start_of(handle.pid)
        assert start is not None
        (tmp_path / "locust.pid").write_text(f"{handle.pid} {start.created!r} {start.boot!r} -\n")
        assert kill_leftover(tmp_path) is True
        assert not running(handle)

    def test_recycled_pid_is_left_alone(self, tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
        """The PID with another start time (a recycled PID) is not killed; the stale file goes."""
        handle = fake_locust(spawned)
        (tmp_path / "locust.pid").write_text(f"{handle.pid} {handle.create_time() - 3.0!r}\n")
        assert kill_leftover(tmp_path) is False
        assert running(handle)
        assert not (tmp_path / "locust.pid").exists()

    def test_pid_only_file_of_older_versions(self, tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
        """A PID file without start time (older version) still lets cleanup kill its locust."""
        handle = fake_locust(spawned)
        (tmp_path / "locust.pid").write_text(f"{handle.pid}\n")
        assert kill_leftover(tmp_path) is True
        assert not running(handle)

    def test_not_locust_is_left_alone(self, tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
        """A process that does not run locust is never killed, even with a matching start time."""
        handle = fake_locust(spawned, name="something-else")
        (tmp_path / "locust.pid").write_text(f"{handle.pid} {handle.create_time()!r}\n")
        assert kill_leftover(tmp_path) is False
        assert running(handle)

    def test_locust_in_someone_elses_group_is_left_alone(self, tmp_path: Path,
                                                         spawned: list[subprocess.Popen[bytes]]) -> None:
        """A locust that does not lead its own group (here: in ours) is not killed with its group."""
        handle = fake_locust(spawned, own_group=False)
        assert os.getpgid(handle.pid) != handle.pid
        (tmp_path / "locust.pid").write_text(f"{handle.pid} {handle.create_time()!r}\n")
        assert kill_leftover(tmp_path) is False
        assert running(handle)
