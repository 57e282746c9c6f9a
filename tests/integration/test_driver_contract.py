"""The driver contract on the real local, compose, istio and consul meshes (and a Consul datacenter through its
HTTP API): every change each can make applies,
shows in traffic through the gateway, and is undone exactly (Envoy configuration and runtime back at the baseline,
containers as they were, Istio objects byte for byte, Consul's config entries and sidecar registrations as they
were), also twice and from a fresh driver object, as ``cleanup`` undoes after a crash."""

from __future__ import annotations

import os
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
from meshtools import DC_TOKEN, consul_datacenter

from harness.mesh import open_driver
from harness.mesh.base import MeshDriver
from harness.mesh.intents import HttpFault
from harness.model.environment import Environment
from harness.model.loader import Loaded, load_environment

CASES = traffic_cases() + certificate_cases()


@pytest.fixture(name="env", scope="module", params=["local", "compose", "istio", "consul", "consul-datacenter"])
def _env(request: pytest.FixtureRequest) -> Loaded[Environment]:
    """Each mesh the harness starts (istio: with the real istiod; consul: with a real Consul agent), and a Consul
    datacenter it does not (that agent, seen through its HTTP API and a Prometheus); module scope, so one mesh
    runs at a time."""
    fixture = {"local": "demo_env", "compose": "compose_env", "istio": "istio_env", "consul": "consul_env",
               "consul-datacenter": "consul_datacenter_env"}[request.param]
    env: Loaded[Environment] = request.getfixturevalue(fixture)
    return env


@pytest.fixture(name="consul_datacenter_env", scope="module")
def _consul_datacenter_env(consul_env: Loaded[Environment],
                           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded[Environment]]:
    """The demo on a local Consul agent, as an existing datacenter (``control_plane: cluster``)."""
    local = open_driver(consul_env.model, consul_env.path, tmp_path_factory.mktemp("consul-dc-workloads"))
    before = {name: os.environ.get(name) for name in DC_TOKEN}
    local.up()
    try:
        os.environ.update(DC_TOKEN)
        with consul_datacenter(local, tmp_path_factory.mktemp("consul-dc")) as path:
            yield load_environment(path)
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        local.down()
        local.close()


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
            f" ({reason})" if (reason := mesh.capabilities.refused.get(what)
                               or mesh.capabilities.refused.get(case.covers.partition("=")[0])) else ""))
    run_case(mesh, lambda: open_driver(env.model, env.path, mesh.state_dir), case, settle_s=0.2)


def test_every_declared_fault_kind_has_a_case(mesh: MeshDriver) -> None:
    """The mesh declares no fault kind the contract does not exercise."""
    assert missing_cases(mesh, CASES) == []
