"""The mesh's run lock: one mesh-harness acting on a mesh at a time, and a damaged lock file reported."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from harness._errors import MeshError, StateCorrupt
from harness.runner.session import acquire_lock, run_lock

__all__: list[str] = []


def assert_names_file_and_remedy(exc: StateCorrupt, path: Path) -> None:
    assert exc.exit_code == 3
    assert exc.path == str(path)
    assert f"remove {path}" in str(exc)


class TestLock:
    def test_holder_pid_is_written(self, tmp_path: Path) -> None:
        """The lock file holds the holder's PID while it is held."""
        with run_lock(tmp_path / "state"):
            assert (tmp_path / "state" / "run.lock").read_text() == str(os.getpid())

    def test_second_taker_is_told_who_holds_it(self, tmp_path: Path) -> None:
        """While held, another taker gets a MeshError (exit 3) naming the holder's PID."""
        with run_lock(tmp_path), pytest.raises(MeshError, match=f"pid {os.getpid()}") as info:
            acquire_lock(tmp_path)
        assert info.value.exit_code == 3

    def test_released_after_the_block(self, tmp_path: Path) -> None:
        """The lock can be taken again once the block has ended."""
        with run_lock(tmp_path):
            pass
        acquire_lock(tmp_path).close()

    def test_holder_that_is_not_a_pid_is_unknown(self, tmp_path: Path) -> None:
        """A held lock whose content is not a PID is reported as held by an unknown process, not echoed."""
        lock = acquire_lock(tmp_path)
        try:
            lock.seek(0)
            lock.truncate()
            lock.write("\x1b[31mnot a pid")
            lock.flush()
            with pytest.raises(MeshError, match="pid unknown") as info:
                acquire_lock(tmp_path)
            assert "not a pid" not in str(info.value)
        finally:
            lock.close()


class TestDamagedLock:
    def test_directory(self, tmp_path: Path) -> None:
        """A directory where run.lock should be is StateCorrupt naming it and how to fix it."""
        (tmp_path / "run.lock").mkdir()
        with pytest.raises(StateCorrupt, match="is a directory") as info:
            acquire_lock(tmp_path)
        assert_names_file_and_remedy(info.value, tmp_path / "run.lock")

    def test_symlink(self, tmp_path: Path) -> None:
        """A symbolic link (never written by the harness) is StateCorrupt, and its target is not touched."""
        target = tmp_path / "elsewhere"
        target.write_text("keep me")
        (tmp_path / "run.lock").symlink_to(target)
        with pytest.raises(StateCorrupt, match="symbolic link") as info:
            acquire_lock(tmp_path)
        assert_names_file_and_remedy(info.value, tmp_path / "run.lock")
        assert target.read_text() == "keep me"

    def test_fifo(self, tmp_path: Path) -> None:
        """A FIFO is StateCorrupt (not a regular file), and taking the lock does not block on it."""
        os.mkfifo(tmp_path / "run.lock")
        with pytest.raises(StateCorrupt, match="not a regular file") as info:
            acquire_lock(tmp_path)
        assert_names_file_and_remedy(info.value, tmp_path / "run.lock")

    def test_unreadable(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A lock file this user may not open (permissions) is StateCorrupt saying why."""
        real = os.open

        def denied(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
            if Path(path).name == "run.lock":
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(path, flags, mode)

        monkeypatch.setattr(os, "open", denied)
        with pytest.raises(StateCorrupt, match="Permission denied") as info:
            acquire_lock(tmp_path)
        assert_names_file_and_remedy(info.value, tmp_path / "run.lock")

    def test_state_dir_is_a_file(self, tmp_path: Path) -> None:
        """A file where the state directory should be is StateCorrupt naming it."""
        (tmp_path / "state").write_text("")
        with pytest.raises(StateCorrupt, match="is not a directory") as info:
            acquire_lock(tmp_path / "state")
        assert info.value.exit_code == 3
        assert info.value.path == str(tmp_path / "state")
