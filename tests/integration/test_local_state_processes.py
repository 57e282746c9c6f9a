"""down and older state files, with real processes standing for the mesh's own.

The validation of state.json itself is in tests/unit/mesh/test_local_state.py.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness._errors import StateCorrupt
from harness._process import Proc, spawn, stop_all
from harness.mesh.local.driver import LocalMesh
from harness.mesh.local.state import State as _State
from harness.mesh.local.topology import Instance, Layout
from harness.model.environment import Environment
from harness.model.loader import Loaded, load_environment

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[2]

@pytest.fixture(name="env", scope="module")
def _env() -> Loaded[Environment]:
    return load_environment(REPO / "environments" / "local.yaml")

@pytest.fixture(name="mesh")
def _mesh(env: Loaded[Environment], tmp_path: Path) -> Iterator[LocalMesh]:
    """A LocalMesh on a private state directory; nothing is started."""
    mesh = LocalMesh.for_environment(env.model, env.path, tmp_path / "state")
    mesh.state_dir.mkdir()
    yield mesh
    mesh.close()

@pytest.fixture(name="started")
def _started() -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    yield procs
    stop_all(procs, grace_s=0.0)

def layout() -> Layout:
    inst = Instance("ratings-v1-0", "ratings", "v1", 0, 20001, 20002, 20003, {"details": 20004}, 100001)
    return Layout([inst], 20010, 20011, 100000)

def state_doc(mesh: LocalMesh, procs: list[Proc] | None = None) -> dict[str, Any]:
    state = _State(env=mesh.env.model_dump(by_alias=True, mode="json"), env_path=str(mesh.env_path),
                   layout=layout(), procs=procs or [], started_at=time.time())
    return state.to_json()

def write(mesh: LocalMesh, doc: object) -> None:
    mesh.state_file.write_text(json.dumps(doc))

def sleeper(tmp_path: Path, started: list[Proc], argv: list[str] | None = None) -> Proc:
    proc = spawn("app:sleeper", argv or ["sleep", "30"], tmp_path / "sleep.log")
    started.append(proc)
    return proc

def gone(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False

def assert_names_file_and_remedy(exc: StateCorrupt, mesh: LocalMesh) -> None:
    assert exc.exit_code == 3
    assert exc.path == str(mesh.state_file)
    assert str(mesh.state_file) in str(exc)
    assert f"mesh-harness down --env {mesh.env_path}" in str(exc)

def _missing_key(doc: dict[str, Any]) -> None:
    del doc["procs"]

def _pid_as_string(doc: dict[str, Any]) -> None:
    doc["procs"] = [{"name": "app:x", "pid": "1234", "started": 1.5, "log": "x.log"}]

def _pid_one(doc: dict[str, Any]) -> None:
    doc["procs"] = [{"name": "init", "pid": 1, "started": 1.5, "log": "x.log"}]

def _started_as_bool(doc: dict[str, Any]) -> None:
    doc["procs"] = [{"name": "app:x", "pid": 1234, "started": True, "log": "x.log"}]

def _unknown_key(doc: dict[str, Any]) -> None:
    doc["colour"] = "blue"

def _port_out_of_range(doc: dict[str, Any]) -> None:
    doc["layout"]["gateway_port"] = 70000

def _instance_missing_port(doc: dict[str, Any]) -> None:
    del doc["layout"]["instances"][0]["admin_port"]

def _override_not_a_policy(doc: dict[str, Any]) -> None:
    doc["overrides"] = {"productpage->reviews": {"retries": "lots"}}

def _override_key_not_an_edge(doc: dict[str, Any]) -> None:
    doc["overrides"] = {"reviews": {}}

def _split_weight_text(doc: dict[str, Any]) -> None:
    doc["splits"] = {"reviews": {"v1": "half"}}

def _version_zero(doc: dict[str, Any]) -> None:
    doc["version"] = 0

WRONG_SHAPE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "missing-key": (_missing_key, "procs: missing"),
    "pid-as-string": (_pid_as_string, "procs[0].pid"),
    "pid-one": (_pid_one, "procs[0].pid"),
    "started-as-bool": (_started_as_bool, "procs[0].started"),
    "unknown-key": (_unknown_key, "colour: unexpected key"),
    "port-out-of-range": (_port_out_of_range, "layout.gateway_port"),
    "instance-missing-port": (_instance_missing_port, "layout.instances[0].admin_port: missing"),
    "override-not-a-policy": (_override_not_a_policy, "productpage->reviews: retries"),
    "override-key-not-an-edge": (_override_key_not_an_edge, "'reviews' is not an edge"),
    "split-weight-text": (_split_weight_text, "splits.reviews.v1"),
    "version-zero": (_version_zero, "version"),
}


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
