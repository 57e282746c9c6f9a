"""The driver contract on the real local mesh: every change it can make applies, shows in traffic
through the gateway, and is undone exactly (Envoy configuration and runtime back at the baseline),
also twice and from a fresh driver object, as ``cleanup`` undoes after a crash."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from drivercontract import Case, certificate_cases, missing_cases, run_case, traffic_cases

from harness.mesh import open_driver
from harness.mesh.base import MeshDriver
from harness.model.environment import Environment
from harness.model.loader import Loaded

CASES = traffic_cases() + certificate_cases()


@pytest.fixture(name="mesh", scope="module")
def _mesh(demo_env: Loaded[Environment], tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshDriver]:
    state = tmp_path_factory.mktemp("contract-state")
    mesh = open_driver(demo_env.model, demo_env.path, state)
    mesh.up()
    try:
        yield mesh
    finally:
        mesh.down()
        mesh.close()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_local_mesh_keeps_the_contract(mesh: MeshDriver, demo_env: Loaded[Environment], case: Case) -> None:
    """Apply, see it in traffic, undo, and find every Envoy as it was."""
    run_case(mesh, lambda: open_driver(demo_env.model, demo_env.path, mesh.state_dir), case, settle_s=0.2)


def test_every_declared_fault_kind_has_a_case(mesh: MeshDriver) -> None:
    """The local mesh declares no fault kind the contract does not exercise."""
    assert missing_cases(mesh, CASES) == []
