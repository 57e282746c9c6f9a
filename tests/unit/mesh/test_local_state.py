"""The local mesh's state.json: validated on every read, older files still stoppable, damage reported.

No process is started here (the tests of `down` with real processes are in
tests/integration/test_local_state_processes.py).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from localstate import env_fixture, layout, mesh_fixture, state_doc, write  # noqa: F401 - fixtures

from harness._errors import StateCorrupt
from harness._process import Proc
from harness.mesh.local import driver, state
from harness.mesh.local.driver import LocalMesh
from harness.mesh.local.state import State as _State
from harness.mesh.local.topology import Instance, Layout

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[3]


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


def _boot_negative(doc: dict[str, Any]) -> None:
    doc["procs"] = [{"name": "app:x", "pid": 1234, "started": 1.5, "log": "x.log", "boot": -1.0, "boot_id": None}]


def _boot_id_not_an_id(doc: dict[str, Any]) -> None:
    doc["procs"] = [{"name": "app:x", "pid": 1234, "started": 1.5, "log": "x.log", "boot": 1.0, "boot_id": "../x"}]


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
    "boot-negative": (_boot_negative, "procs[0].boot"),
    "boot-id-not-an-id": (_boot_id_not_an_id, "procs[0].boot_id"),
    "unknown-key": (_unknown_key, "colour: unexpected key"),
    "port-out-of-range": (_port_out_of_range, "layout.gateway_port"),
    "instance-missing-port": (_instance_missing_port, "layout.instances[0].admin_port: missing"),
    "override-not-a-policy": (_override_not_a_policy, "productpage->reviews: retries"),
    "override-key-not-an-edge": (_override_key_not_an_edge, "'reviews' is not an edge"),
    "split-weight-text": (_split_weight_text, "splits.reviews.v1"),
    "version-zero": (_version_zero, "version"),
}


class TestCorruptStateFile:
    @pytest.mark.parametrize("case", sorted(WRONG_SHAPE))
    def test_wrong_shape_is_state_corrupt(self, mesh: LocalMesh, case: str) -> None:
        """Valid JSON of the wrong shape is StateCorrupt naming the field, the file and the remedy."""
        change, where = WRONG_SHAPE[case]
        doc = state_doc(mesh)
        change(doc)
        write(mesh, doc)
        with pytest.raises(StateCorrupt) as info:
            mesh.status()
        assert where in str(info.value)
        assert_names_file_and_remedy(info.value, mesh)

    @pytest.mark.parametrize(("text", "problem"), [
        ("[1, 2]", "JSON array where an object is expected"),
        ('"state"', "JSON string where an object is expected"),
        ("null", "JSON null where an object is expected"),
        ('{"env": ', "is not JSON"),
        ("", "is not JSON"),
    ])
    def test_not_an_object_is_state_corrupt(self, mesh: LocalMesh, text: str, problem: str) -> None:
        """A state file that is not a JSON object (or not JSON) is StateCorrupt saying which."""
        mesh.state_file.write_text(text)
        with pytest.raises(StateCorrupt, match=problem) as info:
            mesh.status()
        assert_names_file_and_remedy(info.value, mesh)

    def test_binary_garbage_is_state_corrupt(self, mesh: LocalMesh) -> None:
        """Bytes that are not UTF-8 text are StateCorrupt, not a UnicodeDecodeError."""
        mesh.state_file.write_bytes(b"\xff\xfe\x00garbage")
        with pytest.raises(StateCorrupt, match="not UTF-8") as info:
            mesh.status()
        assert_names_file_and_remedy(info.value, mesh)

    def test_directory_is_state_corrupt(self, mesh: LocalMesh) -> None:
        """A directory where state.json should be is StateCorrupt."""
        mesh.state_file.mkdir()
        with pytest.raises(StateCorrupt, match="is a directory") as info:
            mesh.status()
        assert_names_file_and_remedy(info.value, mesh)

    def test_unreadable_is_state_corrupt(self, mesh: LocalMesh, monkeypatch: pytest.MonkeyPatch) -> None:
        """A state file that cannot be read (permissions) is StateCorrupt saying why."""
        write(mesh, state_doc(mesh))
        real = Path.read_bytes

        def denied(path: Path) -> bytes:
            if path == mesh.state_file:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(Path, "read_bytes", denied)
        with pytest.raises(StateCorrupt, match="Permission denied") as info:
            mesh.status()
        assert_names_file_and_remedy(info.value, mesh)


class TestCommandsOnACorruptState:
    def test_is_up_raises_rather_than_guess(self, mesh: LocalMesh) -> None:
        """is_up on a damaged state is StateCorrupt: neither 'running' nor 'not running' can be vouched for."""
        mesh.state_file.write_text("[]")
        with pytest.raises(StateCorrupt):
            mesh.is_up()

    def test_up_refuses_before_starting_anything(self, mesh: LocalMesh) -> None:
        """up over a damaged state is StateCorrupt and writes nothing into the state directory."""
        mesh.state_file.write_text("[]")
        with pytest.raises(StateCorrupt):
            mesh.up()
        assert sorted(p.name for p in mesh.state_dir.iterdir()) == ["state.json"]

    def test_state_property_raises_state_corrupt(self, mesh: LocalMesh) -> None:
        """Commands that need the state (run, set_override) get StateCorrupt, not a KeyError."""
        write(mesh, {"env": {}})
        with pytest.raises(StateCorrupt):
            _ = mesh.layout


    def test_down_removes_an_empty_directory_in_its_place(self, mesh: LocalMesh) -> None:
        """A directory named state.json is removed by down when empty."""
        mesh.state_file.mkdir()
        assert mesh.down() == []
        assert not mesh.state_file.exists()

    def test_down_reports_a_directory_it_cannot_remove(self, mesh: LocalMesh) -> None:
        """A non-empty directory named state.json is StateCorrupt after down has stopped what it could."""
        mesh.state_file.mkdir()
        (mesh.state_file / "x").write_text("x")
        with pytest.raises(StateCorrupt, match="not empty") as info:
            mesh.down()
        assert info.value.exit_code == 3
        assert str(mesh.state_file) in str(info.value)


class TestValidState:
    def test_round_trip(self, mesh: LocalMesh) -> None:
        """What _State writes, it reads back unchanged."""
        proc = Proc("app:x", 4242, 1234.5, "x.log", 1000.0, "0f5c6d1e-8a52-4c2b-9a1e-3c4d5e6f7a8b")
        doc = state_doc(mesh, [proc])
        doc["overrides"] = {"productpage->reviews": {"retries": {"attempts": 0}}}
        doc["splits"] = {"reviews": {"v1": 50, "v2": 50.0}}
        back = _State.from_json(json.loads(json.dumps(doc)))
        assert back.to_json() == json.loads(json.dumps(doc))
        assert back.procs == [proc]

    def test_a_record_without_boot_time_reads(self, mesh: LocalMesh) -> None:
        """A process entry an older mesh-harness wrote (no boot time, no boot id) is read, with neither."""
        doc = state_doc(mesh)
        doc["procs"] = [{"name": "app:x", "pid": 4242, "started": 1234.5, "log": "x.log"}]
        assert _State.from_json(doc).procs == [Proc("app:x", 4242, 1234.5, "x.log")]

    def test_no_state_is_not_running(self, mesh: LocalMesh) -> None:
        """Without a state file the mesh is not up, and status says so (with the Envoy it would use)."""
        assert not mesh.is_up()
        info = mesh.status()
        assert info["running"] is False
        assert set(info["envoy"]) >= {"path", "version"}


    def test_status_reports_the_recorded_envoy(self, mesh: LocalMesh) -> None:
        """status shows the Envoy the mesh was started with: its path and version."""
        doc = state_doc(mesh)
        doc["envoy"] = {"path": "/opt/envoy/bin/envoy", "version": "1.39.1", "source": "PATH"}
        write(mesh, doc)
        assert mesh.status()["envoy"] == {"path": "/opt/envoy/bin/envoy", "version": "1.39.1", "source": "PATH"}


@pytest.mark.parametrize(("doc", "record"), [
    (state.ProcDoc, Proc), (state._InstanceDoc, Instance), (state._LayoutDoc, Layout),
    (state._StateDoc, _State), (state._EnvoyDoc, state.EnvoyBinary),
])
def test_validation_models_mirror_the_records(doc: type[Any], record: type[Any]) -> None:
    """Each validation model has exactly the fields of the record it checks (they cannot drift apart)."""
    assert set(doc.model_fields) == {f.name for f in dataclasses.fields(record)}


class TestInotifyBudget:
    def test_missing_proc_is_unknown(self, tmp_path: Path) -> None:
        """Without /proc the budget is unknown: (None, 0), and the preflight check is skipped."""
        assert driver.inotify_budget(tmp_path / "no-proc") == (None, 0)

    def test_counts_this_users_inotify_instances(self, tmp_path: Path) -> None:
        """Instances are counted from the fd links of this user's processes."""
        proc = tmp_path / "proc"
        (proc / "sys/fs/inotify").mkdir(parents=True)
        (proc / "sys/fs/inotify/max_user_instances").write_text("128\n")
        fds = proc / "4242" / "fd"
        fds.mkdir(parents=True)
        for n, target in enumerate(["anon_inode:inotify", "anon_inode:inotify", "/dev/null"]):
            (fds / str(n)).symlink_to(target)
        (proc / "self").mkdir()
        assert driver.inotify_budget(proc) == (128, 2)
