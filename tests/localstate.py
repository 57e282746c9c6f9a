"""Fixtures and builders shared by the unit tests of the local mesh's state file and the integration tests
that stop real processes through it (imported by name; tests/conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness._process import Proc
from harness.mesh.local.driver import LocalMesh
from harness.mesh.local.state import State
from harness.mesh.local.topology import Instance, Layout
from harness.model.environment import Environment
from harness.model.loader import Loaded, load_environment

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(name="env", scope="module")
def env_fixture() -> Loaded[Environment]:
    return load_environment(REPO / "environments" / "local.yaml")


@pytest.fixture(name="mesh")
def mesh_fixture(env: Loaded[Environment], tmp_path: Path) -> Iterator[LocalMesh]:
    """A LocalMesh on a private state directory; nothing is started."""
    mesh = LocalMesh.for_environment(env.model, env.path, tmp_path / "state")
    mesh.state_dir.mkdir()
    yield mesh
    mesh.close()


def layout() -> Layout:
    inst = Instance("ratings-v1-0", "ratings", "v1", 0, 20001, 20002, 20003, {"details": 20004}, 100001)
    return Layout([inst], 20010, 20011, 100000)


def state_doc(mesh: LocalMesh, procs: list[Proc] | None = None) -> dict[str, Any]:
    state = State(env=mesh.env.model_dump(by_alias=True, mode="json"), env_path=str(mesh.env_path),
                  layout=layout(), procs=procs or [], started_at=time.time())
    return state.to_json()


def write(mesh: LocalMesh, doc: object) -> None:
    mesh.state_file.write_text(json.dumps(doc))
