"""down and older state files, with real processes standing for the mesh's own.

The validation of state.json itself is in tests/unit/mesh/test_local_state.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from localstate import env_fixture, layout, mesh_fixture, state_doc, write  # noqa: F401 - fixtures
from meshtools import gone

from harness._process import Proc, spawn, stop_all
from harness.mesh.local.driver import LocalMesh

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(name="started")
def _started() -> Iterator[list[Proc]]:
    """The processes a test spawned, stopped at its end whatever happened."""
    procs: list[Proc] = []
    yield procs
    stop_all(procs, grace_s=0.0)


def sleeper(tmp_path: Path, started: list[Proc], argv: list[str] | None = None) -> Proc:
    proc = spawn("app:sleeper", argv or ["sleep", "30"], tmp_path / "sleep.log")
    started.append(proc)
    return proc




class TestValidState:
    @pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="older state files exist only on Linux")
    def test_older_state_with_clock_ticks_is_stoppable(self, mesh: LocalMesh, tmp_path: Path,
                                                       started: list[Proc]) -> None:
        """A state file whose start times are clock ticks (older version) is valid: up, then stopped by down."""
        proc = sleeper(tmp_path, started)
        raw = Path(f"/proc/{proc.pid}/stat").read_text()
        ticks = int(raw[raw.rfind(")") + 2:].split()[19])
        doc = state_doc(mesh, [proc])
        doc["procs"][0]["started"] = ticks
        del doc["envoy"]  # older versions did not record it
        write(mesh, doc)
        assert mesh.is_up()
        assert mesh.status()["processes"] == [{"name": proc.name, "pid": proc.pid, "alive": True}]
        assert mesh.down() == []
        assert gone(proc.pid)


class TestCommandsOnACorruptState:
    def test_down_stops_the_entries_it_can_read(self, mesh: LocalMesh, tmp_path: Path,
                                                started: list[Proc]) -> None:
        """down on a damaged state stops the process entries that still validate, then removes the file."""
        proc = sleeper(tmp_path, started)
        doc = state_doc(mesh, [proc])
        doc["procs"].append({"name": "app:broken", "pid": "nope"})
        del doc["layout"]
        write(mesh, doc)
        assert mesh.down() == []
        assert gone(proc.pid)
        assert not mesh.state_file.exists()

    def test_down_finds_this_meshs_processes_by_command_line(self, mesh: LocalMesh, tmp_path: Path,
                                                             started: list[Proc]) -> None:
        """down on an unreadable state stops processes whose --config/-c point into this state directory."""
        app = sleeper(tmp_path, started, [sys.executable, "-c", "import time; time.sleep(30)",
                                          "--config", str(mesh.state_dir / "apps" / "ratings-v1-0.json")])
        envoy = sleeper(tmp_path, started, [sys.executable, "-c", "import time; time.sleep(30)",
                                            "-c", str(mesh.state_dir / "envoy" / "gateway" / "bootstrap.json")])
        mesh.state_file.write_text("{not json")
        assert mesh.down() == []
        assert gone(app.pid)
        assert gone(envoy.pid)
        assert not mesh.state_file.exists()

    def test_down_leaves_other_programs_alone(self, mesh: LocalMesh, tmp_path: Path, started: list[Proc]) -> None:
        """A program that merely names a file in the state directory (a pager, an editor) is not stopped."""
        reader = sleeper(tmp_path, started, [sys.executable, "-c", "import time; time.sleep(30)",
                                             str(mesh.state_file), str(mesh.state_dir / "apps" / "x.json")])
        mesh.state_file.write_text("{not json")
        assert mesh.down() == []
        assert psutil.Process(reader.pid).status() != psutil.STATUS_ZOMBIE
