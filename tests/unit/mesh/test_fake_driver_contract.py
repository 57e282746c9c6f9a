"""The driver contract on the fake mesh: every case applies, shows in the driver's own view, and undoes
exactly (also twice, and from a fresh driver as cleanup would); and the contract itself can fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from drivercontract import Case, missing_cases, run_case, traffic_cases

from harness.mesh.base import MeshDriver
from harness.model.environment import Environment
from harness.model.loader import Loaded, load_environment
from harness.testing import FakeMesh

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(name="env", scope="module")
def _env() -> Loaded[Environment]:
    return load_environment(REPO / "environments" / "local.yaml")


def offline(case: Case) -> Case:
    """The case with traffic observations replaced: the fake carries no traffic (policy is read from it)."""
    if case.covers.startswith("policy:"):
        return case
    return Case(case.name, case.covers, case.intent, lambda d: True, lambda d: True)


CASES = [offline(c) for c in traffic_cases()
         if c.covers in FakeMesh.capabilities.faults or c.covers.startswith("policy:") or c.covers == "split"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_fake_mesh_keeps_the_contract(env: Loaded[Environment], case: Case) -> None:
    """Apply, see, undo (twice, and from a fresh driver that shares the fake's state) leaves the baseline."""
    mesh = FakeMesh.for_environment(env.model, env.path)
    mesh.up()
    run_case(mesh, lambda: mesh, case)


def test_every_declared_fault_kind_has_a_case(env: Loaded[Environment]) -> None:
    """A driver cannot declare a capability the contract never exercises."""
    mesh = FakeMesh.for_environment(env.model, env.path)
    assert missing_cases(mesh, CASES) == []


class LeakyFake(FakeMesh):
    """A driver whose undo forgets policy overrides: the contract must catch it."""

    def undo(self, undo: dict[str, object]) -> None:
        if undo["op"] != "policy-restore":
            super().undo(undo)  # type: ignore[arg-type]


def test_the_contract_catches_an_undo_that_leaves_a_change(env: Loaded[Environment]) -> None:
    """An undo that does not restore the baseline fails the contract."""
    mesh: MeshDriver = LeakyFake.for_environment(env.model, env.path)
    policy = next(c for c in CASES if c.covers.startswith("policy:"))
    with pytest.raises(AssertionError, match="undo did not restore"):
        run_case(mesh, lambda: mesh, policy)
