"""The driver contract on the real local and compose meshes: every change each can make applies, shows in
traffic through the gateway, and is undone exactly (Envoy configuration and runtime back at the baseline,
containers as they were), also twice and from a fresh driver object, as ``cleanup`` undoes after a crash."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from drivercontract import Case, applicable, certificate_cases, missing_cases, run_case, traffic_cases

from harness.mesh import open_driver
from harness.mesh.base import MeshDriver
from harness.model.environment import Environment
from harness.model.loader import Loaded

CASES = traffic_cases() + certificate_cases()


@pytest.fixture(name="env", scope="module", params=["local", "compose"])
def _env(request: pytest.FixtureRequest) -> Loaded[Environment]:
    """Each mesh the harness starts itself; module scope, so one mesh runs at a time."""
    env: Loaded[Environment] = request.getfixturevalue("demo_env" if request.param == "local" else "compose_env")
    return env


@pytest.fixture(name="mesh", scope="module")
def _mesh(env: Loaded[Environment], tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshDriver]:
    state = tmp_path_factory.mktemp("contract-state")
    mesh = open_driver(env.model, env.path, state)
    mesh.up()
    try:
        yield mesh
    finally:
        mesh.down()
        mesh.close()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_mesh_keeps_the_contract(mesh: MeshDriver, env: Loaded[Environment], case: Case) -> None:
    """Apply, see it in traffic, undo, and find every Envoy (and container) as it was."""
    if not applicable(mesh, case):
        pytest.skip(f"{mesh.name} does not declare {case.covers}")
    run_case(mesh, lambda: open_driver(env.model, env.path, mesh.state_dir), case, settle_s=0.2)


def test_every_declared_fault_kind_has_a_case(mesh: MeshDriver) -> None:
    """The mesh declares no fault kind the contract does not exercise."""
    assert missing_cases(mesh, CASES) == []
