"""Run one game day: check it whole, run its suites through pytest, keep the run, build the report with
its trend, tell the webhooks.

Everything that can be wrong with a game day is found before anything runs, and reported together with
FILE:LINE (exit 2, nothing applied): a suite that is missing or invalid against the environment, a
``select`` that chooses nothing, a non-local mesh without ``--yes``, the clock outside the ``window``.
The suites then run as ``pytest SUITES --alluredir … --results …`` in a child process (the same path as
``pytest suites/``), whose output is the facilitator's live view.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from harness._errors import HarnessError, InputError, Problem
from harness.gameday.history import RUNS, RunSummary, read_history, summarize
from harness.model.gameday import GameDay
from harness.model.loader import Loaded, load_gameday
from harness.runner.select import keyword_matcher
from harness.runner.session import env_candidates, load_checked

__all__ = ["GameDayPlan", "plan_gameday", "run_gameday"]

REPORT = "report"


@dataclass(frozen=True)
class GameDayPlan:
    """A game day checked and ready: its suites and environment resolved, where its history goes."""

    file: Path
    gameday: GameDay
    suites: list[Path]
    env: Path | None
    """The game day's environment file; None when each suite names its own."""
    meshes: list[str]
    history: Path
    experiments: int


def _suite_path(file: Path, name: str) -> Path | None:
    """A suite named in the game day: relative to the working directory, else beside the game-day file."""
    for candidate in (Path(name), file.parent / name):
        if candidate.is_file():
            return candidate
    return None


def _env_path(file: Path, name: str) -> Path | None:
    for candidate in dict.fromkeys([*env_candidates(file, name, from_cli=False), Path(name)]):
        if candidate.is_file():
            return candidate.resolve()
    return None


def plan_gameday(file: Path, *, yes: bool = False, now: dt.datetime | None = None) -> GameDayPlan:
    """Load and check a game day; InputError with every problem (FILE:LINE) if it must not run."""
    loaded: Loaded[GameDay] = load_gameday(file)
    spec, pos = loaded.model.spec, loaded.positions
    problems: list[Problem] = []
    suites: list[Path] = []
    for i, name in enumerate(spec.suites):
        found = _suite_path(file, name)
        if found is None:
            problems.append(pos.problem(("spec", "suites", i), f"suite {name!r} not found (looked in the working "
                                        f"directory and beside {file}); write the path of a Suite file"))
        else:
            suites.append(found)
    env: Path | None = None
    if spec.environment:
        env = _env_path(file, spec.environment)
        if env is None:
            problems.append(pos.problem(("spec", "environment"), f"environment {spec.environment!r} not found "
                                        f"(beside {file}, or in environments/); write a path or a name"))
    try:
        select = keyword_matcher(spec.select)
    except InputError as exc:
        problems.append(pos.problem(("spec", "select"), exc.problems[0].message))
        select = keyword_matcher(None)
    pairs = []
    if not problems:
        try:  # every suite against its environment; its problems are reported with the rest
            pairs = load_checked(suites, str(env) if env else None)
        except InputError as exc:
            problems += exc.problems
    experiments = sum(1 for s, _ in pairs for e in s.model.spec.experiments if select(s.model, e))
    if pairs and not experiments:
        problems.append(pos.problem(("spec", "select"), f"select {spec.select!r} chooses no experiment of "
                                    f"{', '.join(str(s) for s in suites)}"))
    meshes: list[str] = list(dict.fromkeys(e.model.spec.mesh for _, e in pairs))
    remote = [m for m in meshes if m != "local"]
    if remote and not yes:
        problems.append(pos.problem(("spec", "environment"), f"this game day changes the {', '.join(remote)} mesh "
                                    "of a real environment: pass --yes to confirm (nothing was run)"))
    window = spec.window
    when = now or dt.datetime.now(dt.UTC)
    if window is not None and not window.allows(when):
        local = when.astimezone(zoneinfo.ZoneInfo(window.timezone))
        problems.append(pos.problem(("spec", "window"), f"it is {local:%a %H:%M} in {window.timezone}, outside "
                                    f"the game day's window ({window.describe()}): nothing was run"))
    if problems:
        raise InputError(problems)
    return GameDayPlan(file, loaded.model, suites, env, meshes, Path(loaded.model.history), experiments)


def _run_dir(history: Path, now: dt.datetime) -> Path:
    """``HISTORY/runs/<UTC start>``: names that sort by time; a second run in the same second gets ``-2``."""
    stamp = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    runs = history / RUNS
    for n in range(1, 1000):
        candidate = runs / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            runs.mkdir(parents=True, exist_ok=True)
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:  # before anything ran: the game day's history path is the input at fault
            raise InputError(f"the game day's history {history} cannot be written ({exc.strerror or exc}): "
                             "write another spec.history") from None
    raise InputError(f"{runs} has a thousand runs started at {stamp}")


def pytest_argv(plan: GameDayPlan, run: Path, interactive: bool) -> list[str]:
    """The child ``pytest`` that runs the game day's suites with the harness's plugin."""
    argv = [sys.executable, "-m", "pytest", *(str(s) for s in plan.suites), "--results", str(run / "results.json"),
            "--alluredir", str(run / "allure-results"), "-p", "no:cacheprovider", "-rN"]
    if plan.env is not None:
        argv += ["--env", str(plan.env)]
    if plan.gameday.spec.select:
        argv += ["-k", plan.gameday.spec.select]
    if interactive:
        argv += ["-s", "-p", "harness.gameday.interactive"]
    return argv


def _terminal_foreground() -> bool:
    """Is this process in the foreground of its terminal (so a Ctrl-C reaches its children too)?"""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _run_child(argv: list[str], env: dict[str, str]) -> int:
    """Run the child pytest to its end, whatever signals come: it is the one that rolls back.

    Ctrl-C on a terminal reaches the whole foreground process group, the child included, which rolls
    back and exits; the parent then ignores it (``subprocess.run`` would kill the child 0.25 s into its
    rollback). A SIGINT sent to the parent alone (``kill -INT``, ``timeout -s INT``, a container's stop
    signal) and SIGTERM (a CronJob's deadline, a cancelled CI job) are passed on to the child, whose
    harness plugin unwinds on either as on Ctrl-C.
    """
    child: list[subprocess.Popen[bytes]] = []
    early: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if not child:
            early.append(signum)  # before the child exists: passed on as soon as it does
            return
        with contextlib.suppress(ProcessLookupError):
            child[0].send_signal(signum)

    # Installed before the child exists, so that no signal falls between its start and the handlers.
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN if _terminal_foreground() else forward)
    previous_term = signal.signal(signal.SIGTERM, forward)
    try:
        proc = subprocess.Popen(argv, env=env)
    except BaseException:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
        raise
    child.append(proc)
    for signum in early:
        forward(signum, None)
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)


def _exit_code(pytest_rc: int, summary: RunSummary) -> int:
    """``run``'s exit code for the run (SUITE-FORMAT §3), from pytest's and the results: 4 for a bug, 3 when
    the mesh could not be reached or changed (each experiment's ``exit_code`` in the results), 130 when
    interrupted, 1 when a verdict is not pass."""
    if pytest_rc == 2:
        return 130  # interrupted (by the facilitator's abort or Ctrl-C): rollback ran in the child
    if pytest_rc == 3 or summary.error_exit == 4:
        return 4
    if pytest_rc in (4, 5):
        return 2
    if summary.error_exit == 3:
        return 3
    if not summary.experiments:
        return 3 if pytest_rc else 0
    return 0 if summary.verdict == "pass" and pytest_rc == 0 else 1


def _report(plan: GameDayPlan, run: Path, say: Callable[[str], None]) -> Path | None:
    """Rebuild ``HISTORY/report`` from this run's results with the history of every earlier one."""
    from harness.report.allure_cli import find_allure, generate, install_allure

    results = run / "allure-results"
    if not any(results.glob("*-result.json")):
        say(f"no Allure results in {results}: the report was not built")
        return None
    try:
        cli = find_allure() or install_allure()
        # One file: opened from disk (file:// cannot fetch a multi-file report's data) or kept as an artifact.
        return generate(results, plan.history / REPORT, single_file=True, name=f"game day "
                        f"{plan.gameday.metadata.name}", allure=cli, history=plan.history)
    except HarnessError as exc:
        say(f"the report was not built ({exc}); the results are kept: mesh-harness report {results} --output "
            f"{plan.history / REPORT}")
        return None


def _executor(plan: GameDayPlan, run: Path, order: int) -> None:
    """Allure's ``executor.json``: names each run in the report's trend (build name and order)."""
    results = run / "allure-results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "executor.json").write_text(json.dumps({
        "name": "mesh-harness gameday", "type": "gameday", "buildName": run.name, "buildOrder": order,
        "reportName": f"game day {plan.gameday.metadata.name}"}))


def notify(plan: GameDayPlan, summary: RunSummary, report: Path | None, say: Callable[[str], None]) -> None:
    """Post the run's summary to every webhook; a webhook that fails is reported, never fatal."""
    if not plan.gameday.spec.notify:
        return
    counts = ", ".join(f"{n} {v}" for v, n in summary.counts.items()) or "no experiment"
    body = {
        "text": f"game day {plan.gameday.metadata.name} {summary.run}: {summary.verdict.upper()} ({counts})",
        "gameday": plan.gameday.metadata.name, "run": summary.run, "verdict": summary.verdict,
        "counts": summary.counts, "experiments": summary.experiments,
        "report": str(report.resolve()) if report else None,
    }
    with httpx.Client(timeout=10.0) as client:
        for target in plan.gameday.spec.notify:
            try:
                client.post(target.webhook, json=body).raise_for_status()
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                say(f"notifying {target.webhook} failed: {exc}")


def run_gameday(plan: GameDayPlan, *, interactive: bool = False, say: Callable[[str], None] = print,
                now: dt.datetime | None = None) -> int:
    """Run a checked game day; return the exit code of SUITE-FORMAT §3."""
    start = now or dt.datetime.now(dt.UTC)
    order = len(read_history(plan.history)) + 1
    run = _run_dir(plan.history, start)
    _executor(plan, run, order)
    say(f"game day {plan.gameday.metadata.name}: run {order}, kept in {run}")
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    rc = _run_child(pytest_argv(plan, run, interactive), env)
    try:
        data = json.loads((run / "results.json").read_text())
        summary = summarize(run.name, data) if isinstance(data, dict) else RunSummary(run.name, "error")
    except (OSError, ValueError):
        summary = RunSummary(run.name, "error")
    report = _report(plan, run, say)
    if report is not None:
        say(f"report (with the trend of {order} run{'s' if order != 1 else ''}): {report}")
    notify(plan, summary, report, say)
    return _exit_code(rc, summary)
