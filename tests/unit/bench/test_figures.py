"""The figures of ``python -m bench --json FILE`` on fake samples: per repetition first, then median, min, max;
exactly the fixed keys, with and without ``--quick``; a failed benchmark's keys null; the runner injectable.

No mesh and no timing (project rule: speed goals live in the benchmarks, never in tests).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
if importlib.util.find_spec("bench") is None:  # `pytest` run from elsewhere than the repository root
    sys.path.insert(0, str(REPO))

figures = importlib.import_module("bench.figures")
plan_mod = importlib.import_module("bench.plan")
table = importlib.import_module("bench.table")
bench_main = importlib.import_module("bench.__main__")
memory = importlib.import_module("bench.memory")

EXPECTED_KEYS = {
    f"{key}{suffix}"
    for key in ("envoy_reload_ms_p50", "fault_activation_ms_p50", "fault_activation_ms_p99", "rollback_ms_p99",
                "net_fault_activation_ms_p99", "mesh_up_s", "mesh_rss_mib", "load_rps_bare_locust",
                "load_rps_harness", "load_ratio", "l4_proxy_rps", "envoy_tcp_proxy_rps", "l4_ratio",
                "scrape_ms_p50", "standard_suite_s")
    for suffix in ("", "_min", "_max")
}
"""The issue's key set, written out here rather than read from the code under test."""


def rep(i: int, suite: bool = True) -> dict[str, list[float]]:
    """Repetition ``i``'s fake samples: every measurement, values that differ between repetitions."""
    samples = {
        "envoy_reload_ms": [2.0 + i, 3.0 + i, 4.0 + i],
        "activation_ms": [10.0 + i] * 9 + [40.0 + 10 * i],
        "rollback_ms": [8.0 + i] * 9 + [30.0 + i],
        "net_activation_ms": [5.0 + i, 6.0 + i],
        "mesh_up_s": [4.0 + i],
        "mesh_pss_mib": [500.0 + 10 * i],
        "mesh_pss_after_load_mib": [550.0 + 10 * i],
        "load_bare_rps": [1000.0 + 100 * i],
        "load_harness_rps": [(990.0, 900.0, 1150.0)[i % 3]],
        "l4_proxy_rps": [16000.0 + 1000 * i],
        "envoy_tcp_proxy_rps": [26000.0 - 1000 * i],
        "scrape_ms": [20.0 + i, 30.0 + i, 40.0 + i],
    }
    if suite and i == 0:
        samples["standard_suite_s"] = [170.0]
    return samples


def fake_measured(quick: bool = False, reps: int = 3) -> Any:
    measured = plan_mod.Measured([rep(i, suite=not quick) for i in range(reps)])
    if quick:
        measured.skipped["standard suite"] = "--quick (the key is null)"
    return measured


# ---------------------------------------------------------------------------------------------- figures
def test_percentile_interpolates_and_one_sample_is_itself() -> None:
    assert figures.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == pytest.approx(3.0)
    assert figures.percentile([7.0], 0.99) == 7.0
    assert figures.percentile(list(map(float, range(101))), 0.99) == pytest.approx(99.0)
    with pytest.raises(ValueError, match="no samples"):
        figures.percentile([], 0.5)


def test_the_key_set_is_exactly_the_issues() -> None:
    assert set(figures.JSON_KEYS) == EXPECTED_KEYS
    assert len(figures.JSON_KEYS) == len(EXPECTED_KEYS)  # no duplicates
    assert set(figures.assemble([rep(i) for i in range(3)])) == EXPECTED_KEYS
    assert set(figures.assemble([])) == EXPECTED_KEYS
    assert set(figures.assemble([rep(0)], failed=set(figures.BENCHMARKS))) == EXPECTED_KEYS


def test_a_p99_is_taken_per_repetition_then_the_median_across_them() -> None:
    reps = [rep(i) for i in range(3)]
    out = figures.assemble(reps)
    per_rep = [figures.percentile(r["activation_ms"], 0.99) for r in reps]
    assert out["fault_activation_ms_p99"] == pytest.approx(statistics.median(per_rep), abs=1e-4)
    assert out["fault_activation_ms_p99_min"] == pytest.approx(min(per_rep), abs=1e-4)
    assert out["fault_activation_ms_p99_max"] == pytest.approx(max(per_rep), abs=1e-4)
    pooled = figures.percentile([v for r in reps for v in r["activation_ms"]], 0.99)
    assert out["fault_activation_ms_p99"] != pytest.approx(pooled, abs=0.5)  # not the pooled samples' p99
    assert out["fault_activation_ms_p50"] == pytest.approx(11.0)
    assert out["rollback_ms_p99"] == pytest.approx(statistics.median(
        figures.percentile(r["rollback_ms"], 0.99) for r in reps), abs=1e-4)
    assert out["envoy_reload_ms_p50"] == pytest.approx(4.0)
    assert (out["envoy_reload_ms_p50_min"], out["envoy_reload_ms_p50_max"]) == (3.0, 5.0)
    assert out["scrape_ms_p50"] == pytest.approx(31.0)
    assert out["net_fault_activation_ms_p99"] == pytest.approx(7.0 - 0.01, abs=1e-4)


def test_single_values_and_ratios_per_repetition() -> None:
    out = figures.assemble([rep(i) for i in range(3)])
    assert (out["mesh_up_s"], out["mesh_up_s_min"], out["mesh_up_s_max"]) == (5.0, 4.0, 6.0)
    assert (out["mesh_rss_mib"], out["mesh_rss_mib_min"], out["mesh_rss_mib_max"]) == (510.0, 500.0, 520.0)
    assert out["load_rps_bare_locust"] == 1100.0
    assert out["load_rps_harness"] == 990.0
    ratios = [990 / 1000, 900 / 1100, 1150 / 1200]
    assert out["load_ratio"] == pytest.approx(statistics.median(ratios), abs=1e-4)
    assert out["load_ratio"] != pytest.approx(990 / 1100, abs=1e-3)  # not the ratio of the medians
    assert out["load_ratio_min"] == pytest.approx(min(ratios), abs=1e-4)
    assert out["load_ratio_max"] == pytest.approx(max(ratios), abs=1e-4)
    l4 = [16000 / 26000, 17000 / 25000, 18000 / 24000]
    assert out["l4_ratio"] == pytest.approx(statistics.median(l4), abs=1e-4)
    assert (out["l4_proxy_rps"], out["envoy_tcp_proxy_rps"]) == (17000.0, 25000.0)


def test_a_figure_only_some_repetitions_took_uses_those() -> None:
    out = figures.assemble([rep(i) for i in range(3)])
    assert (out["standard_suite_s"], out["standard_suite_s_min"], out["standard_suite_s_max"]) == (170.0,) * 3
    two = figures.assemble([rep(0), {"mesh_up_s": [9.0]}, {}])
    assert (two["mesh_up_s"], two["mesh_up_s_min"], two["mesh_up_s_max"]) == (6.5, 4.0, 9.0)
    assert two["load_ratio"] == pytest.approx(0.99)


def test_a_zero_baseline_gives_no_ratio_rather_than_infinity() -> None:
    zero = rep(0) | {"load_bare_rps": [0.0]}
    out = figures.assemble([zero])
    assert out["load_ratio"] is None
    assert out["load_rps_bare_locust"] == 0.0
    json.dumps(out, allow_nan=False)


def test_a_failed_benchmark_nulls_its_keys_and_only_them() -> None:
    out = figures.assemble([rep(i) for i in range(3)], failed={"fault activation", "load"})
    for key in ("fault_activation_ms_p50", "fault_activation_ms_p99", "rollback_ms_p99", "load_rps_bare_locust",
                "load_rps_harness", "load_ratio"):
        assert out[key] is None
        assert out[f"{key}_min"] is None
        assert out[f"{key}_max"] is None
    others = {k: v for k, v in out.items() if not k.startswith(("fault_activation", "rollback", "load_"))}
    assert all(v is not None for v in others.values())


def test_every_figure_has_a_benchmark_that_measures_it_and_a_row_that_shows_it() -> None:
    assert set(figures.BENCHMARKS) == {"envoy reload", "fault activation", "net fault activation", "mesh up",
                                       "mesh memory", "load", "l4 proxy", "scrape", "standard suite"}
    assert table.table_keys() == set(figures.FIGURE_KEYS)
    assert {r.benchmark for r in table.ROWS} == set(figures.BENCHMARKS)


# ---------------------------------------------------------------------------------------------- plan
def test_the_budget_full_and_quick() -> None:
    full, quick = plan_mod.plan_for(False), plan_mod.plan_for(True)
    assert (full.reps, full.suite) == (3, True)
    assert (quick.reps, quick.suite) == (2, False)
    assert quick.activation_changes < full.activation_changes
    assert quick.load_s < full.load_s
    assert plan_mod.plan_for(False, 5).reps == 5
    assert plan_mod.plan_for(True, 1).reps == 1
    with pytest.raises(ValueError, match="at least one"):
        plan_mod.Plan(**{**plan_mod.plan_for(True).__dict__, "reps": 0})


# ---------------------------------------------------------------------------------------------- table
def test_rows_show_medians_goals_errors_and_skips() -> None:
    measured = fake_measured(quick=True)
    measured.errors["scrape"] = "repetition 2: TimeoutError: boom"
    out = figures.assemble(measured.repetitions, failed=measured.errors)
    by_name = {r.name: r for r in table.rows(out, measured)}
    up = by_name["mesh up"]
    assert up.measured == 5.0
    assert up.goal.text("s") == "≤ 5.00 s"
    assert "median of 3" in up.note
    load = by_name["load: harness vs bare Locust"]
    assert (load.measured, load.baseline) == (990.0, 1100.0)
    assert load.ratio == out["load_ratio"]
    assert load.goal.at_least
    assert load.goal.checked
    assert by_name["fault activation p50 (seen by traffic)"].baseline == out["envoy_reload_ms_p50"]
    assert by_name["scrape p50 (every Envoy and app)"].error == "repetition 2: TimeoutError: boom"
    suite = by_name["standard suites (pytest suites/)"]
    assert suite.error == ""
    assert suite.ok is None
    assert "skipped" in suite.note
    assert by_name["mesh memory (PSS), after the load"].measured == 560.0


def test_a_figure_missing_without_an_error_is_an_error_row() -> None:
    measured = plan_mod.Measured([{}])
    by_name = {r.name: r for r in table.rows(figures.assemble([]), measured)}
    assert by_name["mesh up"].error == "not measured in any repetition"


# ---------------------------------------------------------------------------------------------- the CLI
Runner = Callable[[Any, Path, Callable[[str], None]], Any]


def recording_runner(measured: Any, seen: list[Any]) -> Runner:
    def runner(plan: Any, env: Path, say: Callable[[str], None]) -> Any:
        seen.append(plan)
        assert env.name == "local.yaml"
        return measured
    return runner


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
def test_json_file_has_exactly_the_keys_and_the_details_sit_beside_it(
        tmp_path: Path, quick: bool, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    seen: list[Any] = []
    argv = [*(["--quick"] if quick else []), "--json", str(out)]
    assert bench_main.main(argv, runner=recording_runner(fake_measured(quick), seen)) == 0
    assert seen[0].quick is quick
    data = json.loads(out.read_text())
    assert set(data) == EXPECTED_KEYS
    assert all(v is None or isinstance(v, int | float) for v in data.values())
    if quick:
        assert data["standard_suite_s"] is None
        assert data["standard_suite_s_min"] is None
        assert data["standard_suite_s_max"] is None
    else:
        assert data["standard_suite_s"] == 170.0
    assert data["fault_activation_ms_p99"] is not None
    details = json.loads((tmp_path / "bench.details.json").read_text())
    assert details["meta"]["quick"] is quick
    assert details["meta"]["cpus"] == os.cpu_count()
    assert "loadavg_before" in details["meta"]
    assert details["figures"] == data
    assert len(details["repetitions"]) == 3
    assert {r["name"] for r in details["results"]} >= {"mesh up", "load: harness vs bare Locust"}
    printed = capsys.readouterr().out
    assert "fault activation p99" in printed
    assert "≥ 0.9×" in printed


def test_reps_reaches_the_runner_and_must_be_positive(tmp_path: Path) -> None:
    seen: list[Any] = []
    assert bench_main.main(["--quick", "--reps", "4"], runner=recording_runner(fake_measured(True), seen)) == 0
    assert seen[0].reps == 4
    with pytest.raises(SystemExit):
        bench_main.main(["--reps", "0"], runner=recording_runner(fake_measured(True), seen))


def test_check_fails_on_a_missed_checked_goal_or_an_error_only() -> None:
    good = fake_measured()
    assert bench_main.main(["--check"], runner=recording_runner(good, [])) == 0
    slow = fake_measured()
    for r in slow.repetitions:
        r["mesh_up_s"] = [9.0]  # an absolute time: shown, not checked
    assert bench_main.main(["--check"], runner=recording_runner(slow, [])) == 0
    weak = fake_measured()
    for r in weak.repetitions:
        r["load_harness_rps"] = [0.5 * r["load_bare_rps"][0]]  # load_ratio 0.5 < 0.9, checked
    assert bench_main.main([], runner=recording_runner(weak, [])) == 0
    assert bench_main.main(["--check"], runner=recording_runner(weak, [])) == 1
    broken = fake_measured()
    broken.errors["l4 proxy"] = "RuntimeError: no Envoy"
    assert bench_main.main(["--check"], runner=recording_runner(broken, [])) == 1


def test_a_failed_benchmark_is_null_in_the_file_and_an_error_in_the_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = fake_measured()
    broken.errors["net fault activation"] = "repetition 1: TimeoutError: no answer"
    out = tmp_path / "b.json"
    bench_main.main(["--json", str(out)], runner=recording_runner(broken, []))
    data = json.loads(out.read_text())
    assert data["net_fault_activation_ms_p99"] is None
    assert data["fault_activation_ms_p99"] is not None
    printed = capsys.readouterr().out
    assert "net fault activation p99: ERROR repetition 1: TimeoutError: no answer" in printed


def test_a_benchmark_with_several_rows_shows_its_error_once() -> None:
    broken = fake_measured()
    broken.errors["fault activation"] = "repetition 3: TimeoutError: no 503"
    out = table.rows(figures.assemble(broken.repetitions, failed=broken.errors), broken)
    errors = {r.name: r.error for r in out if r.error}
    assert errors == {"fault activation p50 (seen by traffic)": "repetition 3: TimeoutError: no 503",
                      "fault activation p99": "as fault activation p50 (seen by traffic)",
                      "fault rollback p99": "as fault activation p50 (seen by traffic)"}


def test_the_real_runner_has_the_runner_signature() -> None:
    runner = importlib.import_module("bench.runner")
    assert list(inspect.signature(runner.measure).parameters) == ["plan", "env_path", "say"]
    assert inspect.signature(bench_main.main).parameters["runner"].default is bench_main._real_runner


def test_details_path_is_beside_the_file() -> None:
    assert bench_main.details_path(Path("/x/bench.json")) == Path("/x/bench.details.json")
    assert bench_main.details_path(Path("out")) == Path("out.details.json")


# ---------------------------------------------------------------------------------------------- memory
def test_pss_counts_the_reported_live_processes_once_each() -> None:
    status = {"processes": [{"name": "me", "pid": os.getpid(), "alive": True},
                            {"name": "gone", "pid": 999_999_999, "alive": False}]}
    assert memory.mesh_pids(status) == [os.getpid()]
    own = memory.tree_pss_mib([os.getpid()])
    assert own > 0
    assert memory.tree_pss_mib([os.getpid(), os.getpid()]) == pytest.approx(own, rel=0.2)
    assert memory.tree_pss_mib([999_999_999]) == 0.0


def test_a_mesh_with_no_live_process_has_no_memory_figure() -> None:
    class Down:
        def status(self) -> dict[str, Any]:
            return {"running": False}

    with pytest.raises(RuntimeError, match="no running process"):
        memory.mesh_pss_mib(Down())


# ---------------------------------------------------------------------------------------------- load and suite
def test_the_bare_load_differs_from_the_harness_load_by_its_locustfile_only(tmp_path: Path) -> None:
    traffic = importlib.import_module("harness.traffic")
    load_cost = importlib.import_module("bench.load_cost")
    spec = traffic.LoadSpec(users=20, rate=load_cost.ASKED_RPS, duration_s=5)
    harness_cmd = traffic.LoadGenerator(spec, "127.0.0.1:9", tmp_path / "h").command()
    bare_cmd = load_cost.BareLoad(spec, "127.0.0.1:9", tmp_path / "b").command()
    at = harness_cmd.index("-f") + 1
    assert bare_cmd[at] == str(load_cost.BARE_LOCUSTFILE)
    assert load_cost.BARE_LOCUSTFILE.is_file()
    assert bare_cmd[:at] + bare_cmd[at + 1:] == harness_cmd[:at] + harness_cmd[at + 1:]


def test_the_suite_is_run_as_the_readme_says() -> None:
    suite = importlib.import_module("bench.suite")
    assert suite.suite_command()[1:4] == ["-m", "pytest", "suites/"]
