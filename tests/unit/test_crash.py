"""Crash reports: unique, private, under the state root, and never a second failure."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from harness._crash import write_crash_report
from harness._paths import state_root


def boom() -> ValueError:
    try:
        raise ValueError("planted")
    except ValueError as exc:
        return exc


def test_report_goes_under_the_state_root_and_holds_the_traceback(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The report is in STATE/crash, owner-only, with the traceback and the command."""
    monkeypatch.setenv("MESH_HARNESS_STATE", str(tmp_path))
    path = write_crash_report(boom(), ["mesh-harness", "run", "x.yaml"])
    assert path is not None
    assert path.parent == tmp_path / "crash"
    text = path.read_text()
    assert "ValueError: planted" in text
    assert "Traceback" in text
    assert "command: mesh-harness run x.yaml" in text
    assert path.stat().st_mode & 0o777 == 0o600


def test_two_reports_never_share_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two crashes in the same second get two files."""
    monkeypatch.setenv("MESH_HARNESS_STATE", str(tmp_path))
    assert write_crash_report(boom()) != write_crash_report(boom())


def test_falls_back_to_the_temp_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A state root that cannot be created sends the report to the temp directory instead."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MESH_HARNESS_STATE", str(blocker))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    path = write_crash_report(boom())
    assert path is not None
    assert path.parent.parent == tmp_path / "tmp"


def test_never_raises_when_nothing_is_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With neither the state root nor the temp directory writable, the answer is None, not an exception."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MESH_HARNESS_STATE", str(blocker))
    monkeypatch.setattr(tempfile, "tempdir", str(blocker))

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("cannot even format")

    assert write_crash_report(Unprintable()) is None


def test_state_root_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without MESH_HARNESS_STATE the root is $XDG_STATE_HOME/mesh-harness."""
    monkeypatch.delenv("MESH_HARNESS_STATE", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert state_root() == tmp_path / "mesh-harness"
