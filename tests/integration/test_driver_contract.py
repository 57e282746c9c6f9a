"""The driver contract on the real local, compose, istio and consul meshes: every change each can make applies,
shows in traffic through the gateway, and is undone exactly (Envoy configuration and runtime back at the baseline,
containers as they were, Istio objects byte for byte, Consul's config entries and sidecar registrations as they
were), also twice and from a fresh driver object, as ``cleanup`` undoes after a crash."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from drivercontract import (
    Case,
    applicable,
    certificate_cases,
    missing_cases,
    refused_option,
    run_case,
    traffic_cases,
)

from harness.mesh import open_driver
from harness.mesh.base import MeshDriver
from harness.mesh.intents import HttpFault
from harness.model.environment import Environment
from harness.model.loader import Loaded

CASES = traffic_cases() + certificate_cases()


@pytest.fixture(name="env", scope="module", params=["local", "compose", "istio", "consul"])
def _env(request: pytest.FixtureRequest) -> Loaded[Environment]:
    """Each mesh the harness starts (istio: with the real istiod; consul: with a real Consul agent); module
    scope, so one mesh runs at a time."""
    fixture = {"local": "demo_env", "compose": "compose_env", "istio": "istio_env", "consul": "consul_env"}[
        request.param]
    env: Loaded[Environment] = request.getfixturevalue(fixture)
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
        what = case.covers if "=" in case.covers else (refused_option(mesh, case) or case.covers)
        if isinstance(case.intent, HttpFault) and case.intent.at not in mesh.capabilities.http_placements:
            what = f"{case.covers}.at={case.intent.at}"
        pytest.skip(f"{mesh.name} does not declare {what}" + (
            f" ({reason})" if (reason := mesh.capabilities.refused.get(what)) else ""))
    run_case(mesh, lambda: open_driver(env.model, env.path, mesh.state_dir), case, settle_s=0.2)


def test_every_declared_fault_kind_has_a_case(mesh: MeshDriver) -> None:
    """The mesh declares no fault kind the contract does not exercise."""
    assert missing_cases(mesh, CASES) == []
