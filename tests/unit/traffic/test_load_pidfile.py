"""kill_leftover: the locust PID file is an identity (PID and start time), read back strictly.

No process is started here; kill_leftover against real processes is in
tests/integration/test_load_leftover.py.
"""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from harness._errors import StateCorrupt
from harness.traffic import kill_leftover

__all__: list[str] = []

LEADER_EXITS_FIRST = ("import ctypes, threading, time\n"
                      "threading.Thread(target=time.sleep, args=(1.0,)).start()\n"
                      "ctypes.CDLL(None).pthread_exit(None)\n")
"""A process whose main thread (the leader) exits while another thread runs on for a second."""


def running(handle: psutil.Process) -> bool:
    return handle.is_running() and handle.status() != psutil.STATUS_ZOMBIE


class TestKill:


    def test_no_file_is_nothing_to_do(self, tmp_path: Path) -> None:
        """Without a PID file there is nothing to kill."""
        assert kill_leftover(tmp_path) is False


def assert_names_file_and_remedy(exc: StateCorrupt, pid_file: Path) -> None:
    assert exc.exit_code == 3
    assert exc.path == str(pid_file)
    assert "pgrep -af locust" in str(exc)
    assert f"remove {pid_file}" in str(exc)


class TestCorruptPidFile:
    @pytest.mark.parametrize("text", ["garbage\n", "", "12 34 56 78 90\n", "1\n", "0\n", "-5\n", "4242 nan\n",
                                      "4242 -1.0\n", "4242 inf\n", "4242 soon\n", "12.5\n", "4242 1.0 2.0\n",
                                      "4242 1.0 nan ab-12\n", "4242 1.0 -2 ab-12\n", "4242 1.0 2.0 NOT/AN/ID\n"])
    def test_wrong_content(self, tmp_path: Path, text: str) -> None:
        """A PID file that does not hold 'PID START BOOT BOOT_ID' (or a valid PID) is StateCorrupt, and is kept."""
        (tmp_path / "locust.pid").write_text(text)
        with pytest.raises(StateCorrupt) as info:
            kill_leftover(tmp_path)
        assert_names_file_and_remedy(info.value, tmp_path / "locust.pid")
        assert (tmp_path / "locust.pid").read_text() == text

    def test_not_ascii(self, tmp_path: Path) -> None:
        """Bytes the harness never writes are StateCorrupt, not a decode error."""
        (tmp_path / "locust.pid").write_bytes(b"\xff\xfe12\n")
        with pytest.raises(StateCorrupt, match="not ASCII") as info:
            kill_leftover(tmp_path)
        assert_names_file_and_remedy(info.value, tmp_path / "locust.pid")

    def test_directory(self, tmp_path: Path) -> None:
        """A directory where the PID file should be is StateCorrupt."""
        (tmp_path / "locust.pid").mkdir()
        with pytest.raises(StateCorrupt, match="is a directory") as info:
            kill_leftover(tmp_path)
        assert_names_file_and_remedy(info.value, tmp_path / "locust.pid")

    def test_unreadable(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A PID file that cannot be read (permissions) is StateCorrupt saying why."""
        pid_file = tmp_path / "locust.pid"
        pid_file.write_text("4242\n")
        real = Path.read_text

        def denied(path: Path, *args: object, **kwargs: object) -> str:
            if path == pid_file:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Path, "read_text", denied)
        with pytest.raises(StateCorrupt, match="Permission denied") as info:
            kill_leftover(tmp_path)
        assert_names_file_and_remedy(info.value, pid_file)
