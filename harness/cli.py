"""The ``mesh-harness`` command line (SUITE-FORMAT §3).

Every error a user can cause ends as a message and an exit code, never as a traceback: 2 for bad input
(nothing applied), 3 for a mesh that cannot be started, reached or read back, 130 after an interrupt
(once rollback has run). A bug of ours exits 4, after rollback, with the path of a crash report that
holds the traceback (:mod:`harness._crash`). Exit 1 only ever means an experiment did not pass.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import typer.core
from rich.console import Console

from harness import __version__
from harness._crash import write_crash_report
from harness._errors import COMMAND_LINE, HarnessError, InputError, MeshError, Problem
from harness.runner.select import keyword_matcher

__all__ = ["app", "keyword_matcher", "main"]

INTERNAL_ERROR = 4
INTERRUPTED = 130


def _metavar_only(self: Any, ctx: Any) -> str | None:
    """Show an option's metavar (FILE, EXPR) and nothing else: Typer's ``<bool>``/``<list[Path]>`` type
    labels are noise in a help text, and flags need no label at all."""
    return self.metavar if self.metavar else None


# Typer (0.2x) labels every parameter with its Python type; this command line names its values instead.
# (tests/unit/test_cli.py fails if a Typer release renames the hook and the labels come back.)
if hasattr(typer.core.TyperOption, "display_type_rich"):
    typer.core.TyperOption.display_type_rich = _metavar_only  # type: ignore[method-assign]
    typer.core.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]

app = typer.Typer(
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Chaos and traffic-policy experiments against a service mesh, with statistical verdicts.",
    epilog="Exit codes: 0 passed; 1 an experiment failed, was inconclusive or aborted; 2 invalid input "
           "(nothing applied); 3 the mesh could not be started or reached; 4 a bug in mesh-harness "
           "(rollback ran; a crash report was written); 130 interrupted (after rollback).",
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

EnvOpt = Annotated[str | None, typer.Option(
    "--env", metavar="FILE", help="Environment file, or NAME for environments/NAME.yaml")]
MeshEnvOpt = Annotated[str, typer.Option(
    "--env", metavar="FILE", help="Environment file, or NAME for environments/NAME.yaml")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of text")]
SuitesArg = Annotated[list[Path], typer.Argument(
    metavar="SUITE", help="Suite files, or directories searched for them (as pytest collects)",
    show_default=False)]
T = TypeVar("T")


def _print_error(exc: HarnessError) -> None:
    if isinstance(exc, InputError):
        for problem in exc.problems:
            err.print(_problem_text(problem), markup=False)
    else:
        err.print(f"[red]error:[/red] {exc}")


def _problem_text(problem: Problem) -> str:
    """``FILE:LINE:COL: path: message``; a problem of the command line itself is ``error: message``."""
    if problem.file == COMMAND_LINE:
        return f"error: {problem.message}"
    return str(problem)


def _guard(fn: Callable[[], T], as_json: bool = False) -> T:
    """Run a command body, turning every error into its message and exit code, never a traceback.

    With ``as_json`` a harness error is printed as JSON on stdout too (``{"valid": false, "error": ...,
    "problems": [...]}``), so that a script reading ``--json`` output never has to parse text.
    """
    try:
        return fn()
    except HarnessError as exc:
        if as_json:
            problems = exc.problems if isinstance(exc, InputError) else []
            out.print_json(json.dumps({"valid": False, "error": str(exc), "exit_code": exc.exit_code,
                                       "problems": _problems_json(problems)}))
        else:
            _print_error(exc)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted; every change was rolled back")
        raise typer.Exit(INTERRUPTED) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # a bug of ours: one line here, the traceback in a report
        raise typer.Exit(_internal_error(exc)) from None


def _internal_error(exc: BaseException) -> int:
    report = write_crash_report(exc)
    where = f"the traceback is in {report}" if report else "no crash report could be written"
    err.print(f"internal error (a bug in mesh-harness {__version__}): {type(exc).__name__}: {exc}\n"
              f"{where}; please report it. Rollback ran before this message; `mesh-harness cleanup` undoes anything "
              "it could not.", markup=False)
    return INTERNAL_ERROR


def _version(value: bool) -> None:
    if value:
        out.print(f"mesh-harness {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit")] = False) -> None:
    """Chaos and traffic-policy experiments against a service mesh, with statistical verdicts."""


# ------------------------------------------------------------------------------------------ helpers
def _env_for_mesh(env: str) -> Any:
    from harness.model.loader import load_environment
    from harness.runner.session import resolve_env_path

    return load_environment(resolve_env_path(None, None, env))


def _mesh(env: str) -> Any:
    """The driver of the environment ``--env`` names; only meshes the harness starts itself are managed
    by ``up``, ``down``, ``status`` and ``cleanup``."""
    from harness.mesh import open_driver

    loaded = _env_for_mesh(env)
    return open_driver(loaded.model, loaded.path)


def _suites(paths: list[Path]) -> list[Path]:
    from harness.runner.inputs import expand_suite_args

    return expand_suite_args(paths)


def _problems_json(problems: list[Problem]) -> list[dict[str, Any]]:
    return [{"file": p.file, "line": p.line, "col": p.col, "path": p.path, "message": p.message}
            for p in problems]


# ------------------------------------------------------------------------------------------ mesh
@app.command()
def up(env: MeshEnvOpt = "local") -> None:
    """Start the local mesh in the background and print its gateway URL."""
    def body() -> None:
        mesh = _mesh(env)
        url = mesh.up(on_event=lambda message: err.print(f"[dim]{message}[/dim]"))
        out.print(url)
    _guard(body)


@app.command()
def down(env: MeshEnvOpt = "local") -> None:
    """Stop every process the local mesh started."""
    def body() -> None:
        resisted = _mesh(env).down()
        if resisted:
            raise MeshError(f"could not stop: {', '.join(resisted)} (they survived SIGKILL; see `ps` for them)")
    _guard(body)


@app.command()
def status(env: MeshEnvOpt = "local", as_json: JsonOpt = False) -> None:
    """Show whether the local mesh is running: gateway, processes, overrides. Exit 3 when it is not."""
    def body() -> None:
        info = _mesh(env).status()
        if as_json:
            out.print_json(json.dumps(info))
        elif info["running"] and "config_version" in info:
            parts = "containers" if "containers" in info else "processes"
            out.print(f"running: gateway {info['gateway']}, {len(info[parts])} {parts}, "
                      f"config version {info['config_version']}")
        elif info["running"]:  # a cluster's mesh: nothing of the harness's runs, the cluster answers
            shown = ", ".join(f"{k} {v}" for k, v in info.items() if k != "running" and v is not None)
            out.print(f"running: {shown}")
        elif "state_dir" in info:
            out.print(f"not running (state: {info['state_dir']})")
        else:
            out.print(f"not reachable: {info.get('error', 'the mesh does not answer')}")
        if not info["running"]:
            raise typer.Exit(3)
    _guard(body)


# ------------------------------------------------------------------------------------------ documents
_SKIPPED_WITHOUT_ENV = ("services, versions and edges the suite names", "safety limits",
                        "what the mesh driver can do")


@app.command()
def validate(suites: SuitesArg, env: EnvOpt = None, as_json: JsonOpt = False) -> None:
    """Check suites; with an environment (--env or spec.environment) also every name they use."""
    from harness.model.loader import load_suite
    from harness.runner.session import load_checked

    def body() -> None:
        paths = _suites(suites)
        problems: list[Problem] = []
        report: list[dict[str, Any]] = []
        for path in paths:
            entry: dict[str, Any] = {"file": str(path), "environment": None, "skipped": []}
            report.append(entry)
            try:
                loaded = load_suite(path)
            except InputError as exc:
                problems += exc.problems
                continue
            if env is None and not loaded.model.spec.environment:
                entry["skipped"] = list(_SKIPPED_WITHOUT_ENV)
                continue
            try:
                [(_, env_loaded)] = load_checked([path], env)
                entry["environment"] = str(env_loaded.path)
            except InputError as exc:
                problems += exc.problems
        problems = list(dict.fromkeys(problems))
        if as_json:
            out.print_json(json.dumps({"valid": not problems, "suites": report,
                                       "problems": _problems_json(problems)}))
            if problems:
                raise typer.Exit(2)
            return
        if problems:
            raise InputError(problems)
        out.print(f"ok: {len(paths)} suite(s) valid")
        unchecked = [e["file"] for e in report if e["skipped"]]
        if unchecked:
            err.print(f"note: {len(unchecked)} suite(s) name no environment ({', '.join(unchecked)}), so only "
                      f"their schema was checked, not: {'; '.join(_SKIPPED_WITHOUT_ENV)}. Check them with "
                      "--env FILE, or set spec.environment in the suite.", markup=False)
    _guard(body, as_json)


@app.command()
def schema() -> None:
    """Print the JSON Schema of Suite, Environment and GameDay."""
    from harness.model.schema import schemas

    out.print_json(json.dumps(schemas()))


KeywordOpt = Annotated[str | None, typer.Option("-k", metavar="EXPR",
                                                help="Select experiments, like pytest -k")]


@app.command()
def plan(suites: SuitesArg, env: EnvOpt = None, keyword: KeywordOpt = None, as_json: JsonOpt = False) -> None:
    """Print each experiment's timeline and every change it will make; applies nothing."""
    from harness.mesh import open_driver
    from harness.runner.plan import build_plan, render_plan
    from harness.runner.session import load_checked

    def body() -> None:
        select = keyword_matcher(keyword)
        plans = []
        for suite, env_loaded in load_checked(_suites(suites), env, kube_scope=False):
            mesh = open_driver(env_loaded.model, env_loaded.path)
            try:
                plans.append(build_plan(suite.model, env_loaded.model, mesh, select))
            finally:
                mesh.close()
        if not any(p["experiments"] for p in plans):
            raise InputError(f"-k '{keyword}' selects no experiment")
        if as_json:
            out.print_json(json.dumps(plans))
            return
        out.print("\n\n".join(render_plan(p) for p in plans), markup=False)
    _guard(body, as_json)


# ------------------------------------------------------------------------------------------ runs
@app.command()
def run(
    suites: SuitesArg,
    env: EnvOpt = None,
    results: Annotated[Path | None, typer.Option("--results", metavar="FILE", help="Write results JSON here")] = None,
    keyword: KeywordOpt = None,
) -> None:
    """Run suites against the mesh; exit 0 only if every experiment passed."""
    from harness.report.live import LiveProgress
    from harness.report.table import LOG_WIDTH, render_table, verdict_table
    from harness.runner.results import SuiteResult, check_results_path, exit_code, write_results
    from harness.runner.session import interruptible, load_checked, run_suites

    def body() -> int:
        pairs = load_checked(_suites(suites), env)
        if results is not None:
            check_results_path(results)
        select = keyword_matcher(keyword)
        if not any(select(s.model, e) for s, _ in pairs for e in s.model.spec.experiments):
            raise InputError(f"-k '{keyword}' selects no experiment")

        outcome: list[SuiteResult] = []
        with LiveProgress(err) as live:

            def show(result: Any) -> None:
                colour = {"pass": "green", "fail": "red"}.get(result.verdict, "yellow")
                live.event(f"[{colour}]{result.verdict.upper()}[/{colour}] {result.name} ({result.duration_s:.1f}s)",
                           style="")
                for line in result.failure_lines():
                    err.print(f"    {line}", markup=False)

            try:
                with interruptible():
                    run_suites(pairs, select, live.event, show, outcome, live.progress)
            finally:
                # Written on every exit path, a crash included: the verdicts reached so far are evidence.
                if results is not None and outcome:
                    write_results(results, outcome)
        experiments = [e for r in outcome for e in r.experiments]
        if experiments:
            if err.is_terminal:
                err.print(verdict_table(experiments, width=err.width), soft_wrap=False)
            else:  # a log: wider than rich's default 80 columns, which would fold every expectation away
                err.print(render_table(experiments, width=LOG_WIDTH), markup=False, highlight=False)
        passed = sum(1 for e in experiments if e.verdict == "pass")
        err.print(f"{passed}/{len(experiments)} experiment(s) passed")
        return exit_code(outcome)

    raise typer.Exit(_guard(body))


@app.command()
def report(
    results: Annotated[Path, typer.Argument(metavar="RESULTS_DIR", help="Allure results (pytest --alluredir)")] = Path(
        "allure-results"),
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Where the HTML report goes")] = Path(
        "allure-report"),
    single_file: Annotated[bool, typer.Option("--single-file", help="One self-contained index.html")] = False,
) -> None:
    """Build the Allure HTML report of a run's results (an allure on PATH, else Allure 3 from npm)."""
    from harness.report.allure_cli import find_allure, generate, install_allure

    def body() -> None:
        cli = find_allure()
        if cli is None:
            err.print("[dim]no allure on PATH: installing Allure 3 from npm into the cache (once)[/dim]")
            cli = install_allure()
        index = generate(results, output, single_file=single_file, allure=cli)
        err.print(f"[dim]made with {cli.where}[/dim]")
        out.print(str(index))
    _guard(body)


@app.command()
def gameday(
    args: Annotated[list[str], typer.Argument(
        metavar="FILE | history FILE | manifests FILE", show_default=False,
        help="Run the game day in FILE; or print its history; or write its schedules")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm a game day against a mesh that is not local")] = False,
    interactive: Annotated[bool, typer.Option(
        "--interactive", help="Ask before each experiment: continue, skip or abort")] = False,
    as_json: JsonOpt = False,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="DIR", help="manifests: where the CronJob and workflow files go")] = None,
) -> None:
    """Run a game day (its suites, kept with their history and report), or show its history over time."""
    from harness.gameday.history import history_rows, read_history
    from harness.gameday.manifests import cron_line, write_manifests
    from harness.gameday.run import plan_gameday, run_gameday
    from harness.model.loader import load_gameday

    def body() -> int:
        if len(args) == 2 and args[0] in ("history", "manifests"):
            file = Path(args[1])
            loaded = load_gameday(file)
            if args[0] == "manifests":
                if output is None:
                    raise InputError("gameday manifests needs --output DIR: where to write the CronJob and "
                                     "the workflow")
                for path in write_manifests(loaded.model, args[1], output):
                    out.print(str(path), markup=False)
                err.print(f"cron: {cron_line(loaded.model, args[1])}", markup=False)
                return 0
            history = Path(loaded.model.history)
            runs = read_history(history)
            if as_json:
                out.print_json(json.dumps([r.to_json() for r in runs]))
                return 0
            if not runs:
                err.print(f"no runs of game day {loaded.model.metadata.name} in {history} yet")
                return 0
            header, rows = history_rows(runs)
            widths = [max(len(c) for c in column) for column in zip(header, *rows, strict=True)]
            for row in [header, *rows]:
                out.print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), markup=False)
            return 0
        if len(args) != 1:
            raise InputError("usage: mesh-harness gameday FILE [--yes] [--interactive] | gameday history FILE "
                             "[--json] | gameday manifests FILE --output DIR")
        plan = plan_gameday(Path(args[0]), yes=yes)
        return run_gameday(plan, interactive=interactive, say=lambda line: err.print(line, markup=False))

    raise typer.Exit(_guard(body, as_json))


@app.command()
def cleanup(env: MeshEnvOpt = "local") -> None:
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
            # Part of the mesh (or all of it) is gone. Undo what can be undone on what is left (one dead
            # process must not strand a change on the living ones); what cannot died with its process, and
            # a fresh `up` starts from the baseline.
            actions, errors = rollback(mesh, journal)
            left = journal.pending()
            for item in left:
                journal.done(item.seq)
            journal.clear_if_settled()
            out.print(f"cleanup: the mesh is not fully running; {actions} change(s) undone, {len(left)} died "
                      "with the processes that held them" + (", load generator stopped" if killed else ""))
            return
        actions, errors = rollback(mesh, journal) if pending else (0, [])
        if errors:
            raise MeshError("cleanup could not undo: " + "; ".join(errors)
                            + f"; see the logs ({mesh.logs_hint()}), or `mesh-harness down` to start over")
        out.print(f"cleanup: {actions} change(s) undone" + (", load generator stopped" if killed else ""))
    _guard(body)


@app.command()
def capabilities(env: MeshEnvOpt = "local", as_json: JsonOpt = False) -> None:
    """What the environment's mesh can do: fault kinds, placements, policy fields, evidence."""
    from harness.mesh import capabilities_of

    def body() -> None:
        loaded = _env_for_mesh(env)
        caps = capabilities_of(loaded.model.spec.mesh, loaded.model)
        if caps is None:
            raise InputError.at(loaded.path, f"mesh '{loaded.model.spec.mesh}' has no driver in this version",
                                path="spec.mesh")
        if as_json:
            out.print_json(json.dumps(caps.to_json()))
            return
        rows = [("mesh", caps.mesh), ("faults", ", ".join(sorted(caps.faults))),
                ("http-abort/http-delay at", ", ".join(sorted(caps.http_placements)) or "(neither)"),
                ("policy fields", ", ".join(sorted(caps.policy_fields))),
                ("evidence", ", ".join(sorted(caps.evidence)))]
        rows += [("fault options", ", ".join(sorted(caps.fault_options)))] if caps.fault_options else []
        rows += [(f"cannot: {kind}", reason) for kind, reason in sorted(caps.refused.items())]
        width = max(len(k) for k, _ in rows)
        out.print("\n".join(f"{k:<{width}}  {v}" for k, v in rows), markup=False)
    _guard(body, as_json)


@app.command("toxiproxy-server")
def toxiproxy_server(
    host: Annotated[str, typer.Option("--host", metavar="HOST", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", min=1, max=65535,
                                      help="Port of the HTTP API")] = 8474,
) -> None:
    """Serve Toxiproxy's HTTP API (the embedded server) in the foreground, until Ctrl-C."""
    from harness.toxiproxy import serve

    def body() -> None:
        err.print(f"[dim]toxiproxy API on http://{host}:{port} (Ctrl-C stops it)[/dim]")
        serve(host, port)
    _guard(body)


@app.command()
def install(component: Annotated[str, typer.Argument(
        metavar="COMPONENT", show_default=False,
        help="What to install: toxiproxy, istiod, etcd, kube-apiserver or consul (Go), or allure (npm)")]) -> None:
    """Build or fetch a pinned external component into the harness's cache; print its path."""
    from harness.install import COMPONENTS
    from harness.install import install as build

    def body() -> None:
        if component == "allure":
            from harness.report.allure_cli import ALLURE_NPM_VERSION, install_allure

            err.print(f"[dim]npm install allure@{ALLURE_NPM_VERSION} (cached after the first install)[/dim]")
            out.print(install_allure().argv[0])
            return
        item = COMPONENTS.get(component)
        if item is None:
            raise InputError(f"unknown component {component!r}; known components: "
                             f"{', '.join(sorted([*COMPONENTS, 'allure']))}")
        err.print(f"[dim]{item.how} (cached after the first build)[/dim]")
        out.print(str(build(component)))
    _guard(body)


@app.command("compose-images")
def compose_images() -> None:
    """Build the images of mesh: compose on this machine (no registry needed); print how to select them."""
    def body() -> None:
        from harness.mesh import build_compose_images

        built = build_compose_images(on_event=lambda message: err.print(f"[dim]{message}[/dim]"))
        for kind, tag in built.items():
            out.print(f"MESH_HARNESS_{kind.upper()}_IMAGE={tag}")
    _guard(body)


@app.command("compose-file")
def compose_file(
    env: MeshEnvOpt = "compose",
    output: Annotated[Path, typer.Option("--output", metavar="DIR", help="Where to write docker-compose.yml "
                                         "and its .compose/ configuration")] = Path("."),
) -> None:
    """Write the compose project of an environment (docker-compose.yml + .compose/) to run it yourself."""
    def body() -> None:
        from harness.mesh import write_compose_project

        loaded = _env_for_mesh(env)
        relative = os.path.relpath(loaded.path)
        label = str(loaded.path) if relative.startswith("..") else relative
        out.print(str(write_compose_project(loaded.model, loaded.path, label, output)))
    _guard(body)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # outside any command body (while Typer parses, say)
        sys.exit(INTERRUPTED)
    except Exception as exc:  # outside any command body too: still no traceback
        sys.exit(_internal_error(exc))
