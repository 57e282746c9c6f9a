"""The ``mesh-harness`` command line (SUITE-FORMAT §3).

Every error a user can cause ends as a message and an exit code — 2 for bad input, 3 for a mesh that
cannot be started or reached, 130 after an interrupt (once rollback has run) — never as a traceback.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from harness._errors import HarnessError, InputError
from harness.model.loader import load_environment
from harness.model.schema import schemas
from harness.model.suite import Experiment, Suite

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Chaos and traffic-policy experiments against a service mesh, with statistical verdicts.")
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

EnvOpt = Annotated[str | None, typer.Option("--env", help="Environment file, or a name in environments/")]
T = TypeVar("T")


def _guard(fn: Callable[[], T]) -> T:
    """Run a command body, turning every harness error into its message and exit code."""
    try:
        return fn()
    except HarnessError as exc:
        err.print(f"[red]error:[/red] {exc}" if not isinstance(exc, InputError) else str(exc), markup=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted; every change was rolled back")
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as exc:  # a bug of ours: say so plainly, keep the traceback in a file
        log = Path(tempfile.gettempdir()) / "mesh-harness-crash.log"
        log.write_text(traceback.format_exc())
        err.print(f"internal error (a bug in mesh-harness): {type(exc).__name__}: {exc}\n"
                  f"the traceback is in {log}; please report it", markup=False)
        raise typer.Exit(1) from None


def _env_for_mesh(env: str | None) -> Any:
    from harness.runner.session import resolve_env_path

    return load_environment(resolve_env_path(None, None, env or "local"))


def _mesh(env: str | None) -> Any:
    from harness.mesh.local.driver import LocalMesh

    loaded = _env_for_mesh(env)
    if loaded.model.spec.mesh != "local":
        raise InputError.at(loaded.path, f"mesh '{loaded.model.spec.mesh}' cannot be started by up/down; "
                            "only mesh: local is supported yet")
    return LocalMesh.for_environment(loaded.model, loaded.path)


@app.command()
def up(env: EnvOpt = None) -> None:
    """Start the local mesh in the background and print its gateway URL."""
    def body() -> None:
        mesh = _mesh(env)
        url = mesh.up()
        out.print(url)
    _guard(body)


@app.command()
def down(env: EnvOpt = None) -> None:
    """Stop every process the local mesh started."""
    def body() -> None:
        resisted = _mesh(env).down()
        if resisted:
            raise HarnessError(f"could not stop: {', '.join(resisted)}")
    _guard(body)


@app.command()
def status(env: EnvOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show whether the local mesh is running, its gateway and processes."""
    def body() -> None:
        info = _mesh(env).status()
        if as_json:
            out.print_json(json.dumps(info))
            if not info["running"]:
                raise typer.Exit(3)
            return
        if not info["running"]:
            out.print(f"not running (state: {info['state_dir']})")
            raise typer.Exit(3)
        out.print(f"running: gateway {info['gateway']}, {len(info['processes'])} processes, "
                  f"config version {info['config_version']}")
    _guard(body)


@app.command()
def validate(suites: Annotated[list[Path], typer.Argument()], env: EnvOpt = None) -> None:
    """Check suites (and, with --env or spec.environment, every name they use)."""
    from harness.model.loader import load_suite
    from harness.runner.session import load_checked

    def body() -> None:
        if env is None:
            problems = []
            for path in suites:
                try:
                    loaded = load_suite(path)
                except InputError as exc:
                    problems += exc.problems
                    continue
                if loaded.model.spec.environment:
                    try:
                        load_checked([path], None)
                    except InputError as exc:
                        problems += exc.problems
            if problems:
                raise InputError(problems)
        else:
            load_checked(suites, env)
        out.print(f"ok: {len(suites)} suite(s) valid")
    _guard(body)


@app.command()
def schema() -> None:
    """Print the JSON Schema of Suite and Environment."""
    out.print_json(json.dumps(schemas()))


@app.command()
def plan(suites: Annotated[list[Path], typer.Argument()], env: EnvOpt = None) -> None:
    """Print each experiment's timeline and every change it will make; applies nothing."""
    from harness.runner.plan import render_plan
    from harness.runner.session import load_checked

    def body() -> None:
        for suite, env_loaded in load_checked(suites, env):
            out.print(render_plan(suite.model, env_loaded.model), markup=False)
    _guard(body)


def keyword_matcher(expr: str | None) -> Callable[[Suite, Experiment], bool]:
    """pytest-style ``-k``: substrings of suite/experiment names and tags, with and/or/not/()."""
    if not expr:
        return lambda suite, exp: True
    tokens = re.findall(r"\(|\)|[^\s()]+", expr)
    if any(a == "(" and b == ")" for a, b in itertools.pairwise(tokens)):
        raise InputError(f"-k: empty parentheses in '{expr}'")
    for tok in tokens:
        if tok not in ("(", ")", "and", "or", "not") and not re.fullmatch(r"[\w.:\-\[\]]+", tok):
            raise InputError(f"-k: cannot parse '{tok}' in '{expr}'")

    def match(suite: Suite, exp: Experiment) -> bool:
        haystack = " ".join([suite.metadata.name, exp.name, *exp.tags]).lower()
        code = " ".join(t if t in ("(", ")", "and", "or", "not") else repr(t.lower() in haystack) for t in tokens)
        try:
            return bool(eval(code, {"__builtins__": {}}, {}))  # only True/False/and/or/not/() reach here
        except SyntaxError:
            raise InputError(f"-k: '{expr}' is not a valid expression") from None

    return match


@app.command()
def run(
    suites: Annotated[list[Path], typer.Argument()],
    env: EnvOpt = None,
    results: Annotated[Path | None, typer.Option("--results", help="Write results JSON here")] = None,
    keyword: Annotated[str | None, typer.Option("-k", help="Select experiments, like pytest -k")] = None,
) -> None:
    """Run suites against the mesh; exit 0 only if every experiment passed."""
    from harness.runner.results import check_results_path, exit_code, write_results
    from harness.runner.session import interruptible, load_checked, run_suites

    def body() -> int:
        pairs = load_checked(suites, env)
        if results is not None:
            check_results_path(results)
        select = keyword_matcher(keyword)
        if not any(select(s.model, e) for s, _ in pairs for e in s.model.spec.experiments):
            raise InputError(f"-k '{keyword}' selects no experiment")

        def show(result: Any) -> None:
            colour = {"pass": "green", "fail": "red"}.get(result.verdict, "yellow")
            err.print(f"[{colour}]{result.verdict.upper()}[/{colour}] {result.name} ({result.duration_s:.1f}s)")
            for line in result.failure_lines():
                err.print(f"    {line}", markup=False)

        with interruptible():
            outcome = run_suites(pairs, select, lambda m: err.print(f"[dim]{m}[/dim]"), show)
        if results is not None:
            write_results(results, outcome)
        passed = sum(1 for r in outcome for e in r.experiments if e.verdict == "pass")
        total = sum(len(r.experiments) for r in outcome)
        err.print(f"{passed}/{total} experiment(s) passed")
        return exit_code(outcome)

    raise typer.Exit(_guard(body))


@app.command()
def cleanup(env: EnvOpt = None) -> None:
    """Undo everything a killed run left applied (from its journal), and stop its load generator."""
    from harness.runner.journal import Journal
    from harness.runner.session import run_lock
    from harness.runner.undo import rollback
    from harness.traffic.load import kill_leftover

    def body() -> None:
        mesh = _mesh(env)
        with run_lock(mesh.state_dir):
            _cleanup(mesh)

    def _cleanup(mesh: Any) -> None:
        journal = Journal(mesh.state_dir / "journal.jsonl")
        killed = kill_leftover(mesh.state_dir / "runs" / "load")
        pending = journal.pending()
        if pending and not mesh.is_up():
            # The processes that held those changes are gone; a fresh `up` starts from the baseline.
            for item in pending:
                journal.done(item.seq)
            journal.clear_if_settled()
            out.print(f"cleanup: the mesh is not running; {len(pending)} pending change(s) died with it")
            return
        actions, errors = rollback(mesh, journal) if pending else (0, [])
        if errors:
            raise HarnessError("cleanup could not undo: " + "; ".join(errors))
        out.print(f"cleanup: {actions} change(s) undone" + (", load generator stopped" if killed else ""))
    _guard(body)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - outside any command body
        sys.exit(130)
