"""The real runner's bookkeeping with every measurement replaced by a fake: which samples land in which
repetition, a failure recorded once and isolated, every mesh taken down, the suites skipped under --quick.

No mesh, no process and no timing: ``bench.runner``'s measurement functions are monkeypatched.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
if importlib.util.find_spec("bench") is None:  # `pytest` run from elsewhere than the repository root
    sys.path.insert(0, str(REPO))

runner = importlib.import_module("bench.runner")
plan_mod = importlib.import_module("bench.plan")
figures = importlib.import_module("bench.figures")


class FakeMesh:
    gateway_url = "http://127.0.0.1:1"

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def down(self) -> list[str]:
        self.log.append("down")
        return []

    def close(self) -> None:
        self.log.append("close")


def fake_env() -> Any:
    """What the runner reads of an Environment: the gateway's service and the first edge."""
    return SimpleNamespace(spec=SimpleNamespace(gateway=SimpleNamespace(service="productpage"),
                                                edges=lambda: [("productpage", "reviews")]))


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Every measurement of bench.runner replaced; ``state["fail"]`` names calls that raise."""
    state: dict[str, Any] = {"log": [], "fail": set(), "calls": {}}

    def fake(name: str, value: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            state["calls"].setdefault(name, []).append((args, kwargs))
            if name in state["fail"]:
                raise TimeoutError(f"{name} timed out")
            return value(*args, **kwargs) if callable(value) else value
        return call

    monkeypatch.setattr(runner, "load_env", lambda path: (fake_env(), Path("/env/local.yaml")))
    monkeypatch.setattr(runner, "open_driver", lambda env, path, state_dir: FakeMesh(state["log"]))
    monkeypatch.setattr(runner, "envoy_reload_ms", fake("reload", lambda pairs: [3.0] * (2 * pairs)))
    monkeypatch.setattr(runner, "timed_up", fake("up", (4.5, {"wait_ready": 3.0})))
    monkeypatch.setattr(runner, "mesh_pss_mib", fake("pss", 512.0))
    monkeypatch.setattr(runner, "fault_activation_ms", fake("activation", lambda m, e, n: ([20.0] * n, [15.0] * n)))
    monkeypatch.setattr(runner, "net_fault_activation_ms", fake("net", lambda m, a, b, n: [30.0] * n))
    monkeypatch.setattr(runner, "scrape_ms", fake("scrape", lambda m, e, n: [25.0] * n))
    monkeypatch.setattr(runner, "load_rates", fake("load", (1000.0, 950.0)))
    monkeypatch.setattr(runner, "l4_rates", fake("l4", lambda s, rounds: [(16000.0, 26000.0)] * rounds))
    monkeypatch.setattr(runner, "worker_rates", fake("workers", []))
    monkeypatch.setattr(runner, "standard_suite_s", fake("suite", 170.0))
    return state


def test_a_full_run_fills_every_repetition(fakes: dict[str, Any]) -> None:
    plan = plan_mod.plan_for(False)
    measured = runner.measure(plan, Path("local.yaml"), lambda message: None)
    assert not measured.errors
    assert not measured.skipped
    assert len(measured.repetitions) == plan.reps
    for samples in measured.repetitions:
        assert len(samples["activation_ms"]) == plan.activation_changes
        assert len(samples["envoy_reload_ms"]) == 2 * plan.reload_pairs
        assert samples["l4_proxy_rps"] == [16000.0]
        assert samples["mesh_pss_after_load_mib"] == [512.0]
    assert measured.repetitions[0]["standard_suite_s"] == [170.0]
    assert fakes["log"] == ["down", "close"] * plan.reps
    # The load's order alternates between repetitions, so a drift of the machine weighs on both sides.
    assert [kw["bare_first"] for _, kw in fakes["calls"]["load"]] == [True, False, True]
    out = figures.assemble(measured.repetitions, failed=measured.errors)
    assert all(value is not None for value in out.values())


def test_quick_skips_the_suites(fakes: dict[str, Any]) -> None:
    measured = runner.measure(plan_mod.plan_for(True), Path("local.yaml"), lambda message: None)
    assert "suite" not in fakes["calls"]
    assert "standard suite" in measured.skipped
    assert figures.assemble(measured.repetitions)["standard_suite_s"] is None


def test_a_failure_is_recorded_once_and_the_others_go_on(fakes: dict[str, Any]) -> None:
    fakes["fail"].add("net")
    said: list[str] = []
    measured = runner.measure(plan_mod.plan_for(False), Path("local.yaml"), said.append)
    assert measured.errors == {"net fault activation": "repetition 1: TimeoutError: net timed out"}
    assert len(fakes["calls"]["net"]) == 3  # tried in every repetition
    assert all("scrape_ms" in samples and "load_bare_rps" in samples for samples in measured.repetitions)
    assert any("net fault activation FAILED" in line for line in said)


def test_a_mesh_that_does_not_start_fails_what_needs_it_and_is_still_taken_down(fakes: dict[str, Any]) -> None:
    fakes["fail"].add("up")
    measured = runner.measure(plan_mod.plan_for(True), Path("local.yaml"), lambda message: None)
    assert set(measured.errors) == {"mesh up", *runner.MESH_BENCHMARKS}
    assert measured.errors["load"] == "repetition 1: the mesh did not start"
    assert "activation" not in fakes["calls"]
    assert fakes["log"] == ["down", "close"] * 2
    assert all("envoy_reload_ms" in samples and "l4_proxy_rps" in samples for samples in measured.repetitions)


def test_ctrl_c_is_not_swallowed(fakes: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "scrape_ms", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.measure(plan_mod.plan_for(True), Path("local.yaml"), lambda message: None)
    assert fakes["log"] == ["down", "close"]
