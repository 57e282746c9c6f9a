"""The generated topologies of ``python -m bench --scale`` and the growth fits: no mesh is started."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
if importlib.util.find_spec("bench") is None:  # `pytest` run from elsewhere than the repository root
    sys.path.insert(0, str(REPO))

scale = importlib.import_module("bench.scale")
bench_main = importlib.import_module("bench.__main__")
figures_test = importlib.import_module("tests.unit.bench.test_figures") if importlib.util.find_spec("tests") else None

from harness.model.loader import load_environment  # noqa: E402


@pytest.mark.parametrize("envoys", [2, 7, 8, 25, 50, 100])
def test_a_generated_environment_has_exactly_that_many_envoys_and_loads(envoys: int, tmp_path: Path) -> None:
    doc = scale.scale_environment(envoys)
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(doc))
    env = load_environment(path).model  # the schema and every cross-check the CLI applies
    instances = sum(len(s.versions) for s in env.spec.services)
    assert instances + 1 == envoys  # the sidecars and the gateway
    called = {callee for _caller, callee in env.spec.edges()} | {env.spec.gateway.service}
    assert called == {s.name for s in env.spec.services}  # every service is reached from the gateway


def test_fewer_than_two_envoys_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        scale.scale_environment(1)


def test_fits_tell_linear_from_quadratic_growth() -> None:
    sizes = [7, 25, 50, 100]
    linear = scale.fits(sizes, [0.5 + 0.05 * n for n in sizes])
    assert linear["per_envoy"] == pytest.approx(0.05)
    assert linear["r2"] == pytest.approx(1.0)
    assert linear["exponent"] < 1.0
    quadratic = scale.fits(sizes, [0.01 * n * n for n in sizes])
    assert quadratic["exponent"] == pytest.approx(2.0)
    assert all(math.isnan(v) for v in scale.fits([7], [1.0]).values())


def test_scale_keys_join_the_figures_only_when_asked(tmp_path: Path) -> None:
    seen: list[Any] = []

    def scaler(sizes: Any, quick: bool, say: Any) -> tuple[dict[str, Any], dict[str, str]]:
        seen.append((tuple(sizes), quick))
        return {"mesh_up_s_7": 1.0, "mesh_up_s_25": None}, {"scale 25": "MeshError: no"}

    measured = figures_test.fake_measured(True) if figures_test else None
    if measured is None:
        pytest.skip("the figures test module is not importable from here")
    runner = figures_test.recording_runner(measured, [])
    out = tmp_path / "b.json"
    assert bench_main.main(["--quick", "--json", str(out)], runner=runner, scaler=scaler) == 0
    assert "mesh_up_s_7" not in json.loads(out.read_text())
    assert seen == []
    bench_main.main(["--quick", "--scale", "7,25", "--json", str(out)], runner=runner, scaler=scaler)
    data = json.loads(out.read_text())
    assert data["mesh_up_s_7"] == 1.0
    assert data["mesh_up_s_25"] is None
    assert seen == [((7, 25), True)]
    details = json.loads(bench_main.details_path(out).read_text())
    assert details["errors"]["scale 25"] == "MeshError: no"


def test_sizes_must_be_numbers_of_at_least_two() -> None:
    with pytest.raises(SystemExit):
        bench_main.main(["--scale", "7,x"])
    with pytest.raises(SystemExit):
        bench_main.main(["--scale", "1"])


def test_a_failed_size_is_an_error_row_and_fails_check() -> None:
    if figures_test is None:
        pytest.skip("the figures test module is not importable from here")

    def scaler(sizes: Any, quick: bool, say: Any) -> tuple[dict[str, Any], dict[str, str]]:
        return {"fault_activation_ms_p99_7": 12.0, "mesh_up_s_7": 1.2}, {"scale 25": "MeshError: no"}

    runner = figures_test.recording_runner(figures_test.fake_measured(True), [])
    assert bench_main.main(["--quick", "--scale", "7,25"], runner=runner, scaler=scaler) == 0
    assert bench_main.main(["--quick", "--scale", "7,25", "--check"], runner=runner, scaler=scaler) == 1
    rows = scale.scale_rows({"fault_activation_ms_p99_7": 12.0, "mesh_up_s_7": 1.2}, {"scale 25": "MeshError: no"},
                            (7, 25))
    assert [r.error for r in rows] == ["", "MeshError: no"]
    assert rows[0].measured == 12.0
    assert "up 1.20 s" in rows[0].note
