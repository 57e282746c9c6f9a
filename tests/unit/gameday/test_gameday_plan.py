"""A game day is checked whole before anything runs: every problem at FILE:LINE, exit 2, nothing applied."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from harness._errors import InputError
from harness.gameday.history import RunSummary, history_rows, read_history, summarize
from harness.gameday.interactive import ask
from harness.gameday.manifests import cron_line, cronjob, workflow, write_manifests
from harness.gameday.run import _exit_code, plan_gameday, pytest_argv
from harness.mesh.local.driver import CAPABILITIES as LOCAL_CAPABILITIES
from harness.model.loader import load_gameday
from harness.testing import FakeMesh, registered_driver

REPO = Path(__file__).resolve().parents[3]
WEDNESDAY_NOON_BERLIN = dt.datetime(2026, 12, 2, 11, 0, tzinfo=dt.UTC)  # 12:00 in Berlin
SATURDAY = dt.datetime(2026, 12, 5, 11, 0, tzinfo=dt.UTC)

GAMEDAY = """\
apiVersion: harness/v1
kind: GameDay
metadata: {name: weekly}
spec:
  environment: ENV
  suites: [SUITES]
  select: SELECT
  schedule: "0 10 * * 3"
  window: {days: [mon, tue, wed, thu], hours: "09:00-16:00", timezone: Europe/Berlin}
  history: HISTORY
"""


def write(tmp: Path, *, env: str | None = None, suites: str | None = None, select: str = "retries",
          extra: str = "") -> Path:
    file = tmp / "weekly.yaml"
    file.write_text(GAMEDAY.replace("ENV", env or str(REPO / "environments" / "local.yaml"))
                    .replace("SUITES", suites or str(REPO / "suites" / "retries.yaml"))
                    .replace("SELECT", select).replace("HISTORY", str(tmp / "history")) + extra)
    return file


def problems(file: Path, **kwargs: object) -> list[str]:
    with pytest.raises(InputError) as info:
        plan_gameday(file, **kwargs)  # type: ignore[arg-type]
    return [str(p) for p in info.value.problems]


def test_a_good_game_day_inside_its_window_is_planned(tmp_path: Path) -> None:
    plan = plan_gameday(write(tmp_path), now=WEDNESDAY_NOON_BERLIN)
    assert plan.meshes == ["local"]
    assert plan.experiments >= 1
    assert plan.history == tmp_path / "history"
    argv = pytest_argv(plan, tmp_path / "run", interactive=False)
    assert argv[1:3] == ["-m", "pytest"]
    assert "--alluredir" in argv
    assert argv[argv.index("-k") + 1] == "retries"


def test_outside_the_window_nothing_runs(tmp_path: Path) -> None:
    found = problems(write(tmp_path), now=SATURDAY)
    assert len(found) == 1
    assert ":9:" in found[0]
    assert "it is Sat 12:00 in Europe/Berlin" in found[0]
    assert "nothing was run" in found[0]


def test_every_problem_is_reported_at_its_line(tmp_path: Path) -> None:
    file = write(tmp_path, env="no-such-env", suites="suites/missing.yaml")
    found = problems(file, now=WEDNESDAY_NOON_BERLIN)
    assert any(":5:" in p and "environment 'no-such-env' not found" in p for p in found), found
    assert any(":6:" in p and "suite 'suites/missing.yaml' not found" in p for p in found), found


def test_a_select_that_chooses_nothing_is_refused(tmp_path: Path) -> None:
    found = problems(write(tmp_path, select="nothing-is-called-this"), now=WEDNESDAY_NOON_BERLIN)
    assert any(":7:" in p and "chooses no experiment" in p for p in found), found


class IstioLike(FakeMesh):
    """A driver for ``mesh: istio`` that can do what the local mesh can (nothing runs: only checks)."""

    name = "istio"
    capabilities = dataclasses.replace(LOCAL_CAPABILITIES, mesh="istio")


def test_a_mesh_that_is_not_local_needs_yes(tmp_path: Path) -> None:
    env = tmp_path / "istio.yaml"
    env.write_text((REPO / "environments" / "local.yaml").read_text().replace(
        "mesh: local", "mesh: istio\n  istio: {control_plane: local}"))  # local: no kube context to allow
    file = write(tmp_path, env=str(env))
    with registered_driver("istio", IstioLike):
        found = problems(file, now=WEDNESDAY_NOON_BERLIN)
        assert len(found) == 1
        assert ":5:" in found[0]
        assert "changes the istio mesh" in found[0]
        assert "pass --yes" in found[0]
        assert plan_gameday(file, yes=True, now=WEDNESDAY_NOON_BERLIN).meshes == ["istio"]


@pytest.mark.parametrize(("field", "value", "says"), [
    ("schedule", '"every wednesday"', "cron line of five fields"),
    ("window", '{hours: "16:00-09:00"}', "ends before it starts"),
    ("window", "{timezone: Mars/Olympus}", "unknown time zone"),
    ("window", "{days: [someday]}", "days"),
    ("notify", "[{webhook: chat.example}]", "webhook"),
])
def test_bad_fields_are_refused_with_what_to_write(tmp_path: Path, field: str, value: str, says: str) -> None:
    file = tmp_path / "g.yaml"
    text = GAMEDAY.replace("ENV", "local").replace("SUITES", "suites/retries.yaml").replace("SELECT", "x")
    text = text.replace("HISTORY", "h")
    lines = [line for line in text.splitlines() if not line.startswith(f"  {field}:")]
    file.write_text("\n".join([*lines, f"  {field}: {value}"]) + "\n")
    with pytest.raises(InputError) as info:
        load_gameday(file)
    assert any(says in str(p) for p in info.value.problems), info.value.problems


def test_the_repository_game_day_is_valid() -> None:
    for file in (REPO / "gamedays").glob("*.yaml"):
        load_gameday(file)


def _results(tmp: Path, run: str, verdicts: dict[str, str]) -> None:
    folder = tmp / "runs" / run
    folder.mkdir(parents=True)
    folder.joinpath("results.json").write_text(json.dumps({"suite": "retries", "experiments": [
        {"name": n, "verdict": v, "duration_s": 10.0, "phases": {"fault": {"requests": 100}},
         "expectations": [{"verdict": v}]} for n, v in verdicts.items()]}))


def test_history_reads_every_run_oldest_first(tmp_path: Path) -> None:
    _results(tmp_path, "2026-12-02T10-00-00Z", {"a": "pass", "b": "fail"})
    _results(tmp_path, "2026-12-09T10-00-00Z", {"a": "pass", "b": "pass"})
    (tmp_path / "runs" / "2026-12-16T10-00-00Z").mkdir()  # killed before any result
    runs = read_history(tmp_path)
    assert [r.verdict for r in runs] == ["fail", "pass", "error"]
    assert runs[0].counts == {"pass": 1, "fail": 1}
    assert runs[0].requests == 200
    header, rows = history_rows(runs)
    assert header[-2:] == ["retries::a", "retries::b"]
    assert rows[0][-1] == "fail"
    assert rows[2][-1] == "-"


def test_several_suites_are_summarised_together() -> None:
    data = {"verdict": "pass", "suites": [{"suite": "s1", "experiments": [{"name": "x", "verdict": "pass"}]},
                                          {"suite": "s2", "experiments": [{"name": "y", "verdict": "pass"}]}]}
    assert summarize("r", data).experiments == {"s1::x": "pass", "s2::y": "pass"}


def test_exit_codes_follow_the_harness_not_pytest() -> None:
    """run's codes: 0, 1 for a verdict, 3 when the mesh failed, 4 for a bug, 130 interrupted, 2 for input."""
    def one(verdict: str, **extra: object) -> RunSummary:
        return summarize("r", {"experiments": [{"name": "x", "verdict": verdict, **extra}]})

    assert _exit_code(0, one("pass")) == 0
    assert _exit_code(1, one("fail")) == 1
    assert _exit_code(1, one("error", exit_code=3)) == 3
    assert _exit_code(1, one("error", exit_code=4)) == 4
    assert _exit_code(1, one("error")) == 1
    assert _exit_code(2, one("pass")) == 130
    assert _exit_code(3, one("pass")) == 4
    assert _exit_code(5, one("pass")) == 2


def test_manifests(tmp_path: Path) -> None:
    gameday = load_gameday(write(tmp_path)).model
    job = cronjob(gameday, "gamedays/weekly.yaml")
    assert job["kind"] == "CronJob"
    assert job["spec"]["schedule"] == "0 10 * * 3"
    assert job["spec"]["timeZone"] == "Europe/Berlin"
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["gameday", "gamedays/weekly.yaml", "--yes"]
    flow = workflow(gameday, "gamedays/weekly.yaml")
    assert flow["on"]["schedule"] == [{"cron": "0 10 * * 3"}]
    assert any(step.get("run") == "mesh-harness gameday gamedays/weekly.yaml --yes" for step in
               flow["jobs"]["gameday"]["steps"])
    assert cron_line(gameday, "gamedays/weekly.yaml").startswith("0 10 * * 3 cd ")
    written = write_manifests(gameday, "gamedays/weekly.yaml", tmp_path / "out")
    assert [yaml.safe_load(p.read_text())["name" if p.suffix == ".yml" else "kind"] for p in written] == [
        "CronJob", "game day weekly"]


@pytest.mark.parametrize(("typed", "choice"), [("\n", "continue"), ("s\n", "skip"), ("A\n", "abort"),
                                               ("", "abort"), ("what\nc\n", "continue")])
def test_the_facilitator_is_asked(monkeypatch: pytest.MonkeyPatch, typed: str, choice: str) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(typed))
    assert ask("suites/retries.yaml::x") == choice


def test_unwritable_places_are_input_errors_not_bugs(tmp_path: Path) -> None:
    """Schedules to a file, or a history under a file: exit 2 naming the path, never a traceback or exit 4."""
    from typer.testing import CliRunner

    from harness.cli import app

    file = write(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = CliRunner().invoke(app, ["gameday", "manifests", str(file), "--output", str(blocker / "out")])
    assert result.exit_code == 2, result.output
    assert "cannot write the schedules there" in result.output
    from harness.gameday.run import _run_dir

    with pytest.raises(InputError, match="cannot be written"):
        _run_dir(blocker / "history", WEDNESDAY_NOON_BERLIN)
