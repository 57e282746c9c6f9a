"""pytest plugin: ``pytest suites/`` collects each experiment of each Suite file as one test item.

Items are named ``FILE::EXPERIMENT``, tags become markers (``-m ci``), and a failed item shows its
expectation messages, not a traceback. One mesh session per environment for the whole pytest session.
Hooks only; collection lives in :mod:`harness.pytest_items`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness._errors import InputError
from harness.runner.inputs import looks_like_suite
from harness.runner.results import SuiteResult, check_results_path, write_results

if TYPE_CHECKING:
    from harness.pytest_items import EnvironmentUnavailable
    from harness.runner.session import MeshSession

__all__ = ["RESULTS_KEY", "SESSIONS_KEY", "pytest_addoption", "pytest_collect_file", "pytest_configure",
           "pytest_sessionfinish", "pytest_terminal_summary"]

SESSIONS_KEY = pytest.StashKey[dict[Path, "MeshSession | EnvironmentUnavailable"]]()
"""One entry per environment: its open session, or why it could not be opened (then never retried)."""
RESULTS_KEY = pytest.StashKey[dict[str, SuiteResult]]()
"""Results per suite file, for ``--results``."""
# The machinery behind a suite (models, the runner, scipy for verdicts) loads only when a suite is
# collected: this plugin is installed for every pytest run in the environment, most of which have none.


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mesh-harness")
    group.addoption("--env", dest="harness_env", default=None,
                    help="Environment file (or name in environments/) for every suite")
    group.addoption("--results", dest="harness_results", default=None,
                    help="Write the mesh-harness results JSON here")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SESSIONS_KEY] = {}
    config.stash[RESULTS_KEY] = {}
    target = config.getoption("harness_results", None)
    if target:
        try:
            check_results_path(Path(target))
        except InputError as exc:
            raise pytest.UsageError("; ".join(p.message for p in exc.problems)) from None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix in (".yaml", ".yml") and looks_like_suite(file_path):
        from harness.pytest_items import SuiteFile

        return SuiteFile.from_parent(parent, path=file_path)
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The verdict table (experiment, expectation, observed, interval, samples, verdict) after the run,
    so that what passed, failed or could not be told is read at a glance instead of from dots."""
    results = terminalreporter.config.stash.get(RESULTS_KEY, {})
    if not results:
        return
    from harness.report.table import LOG_WIDTH, render_table

    writer = terminalreporter.config.get_terminal_writer()
    terminalreporter.section("mesh-harness verdicts")
    experiments = [e for suite in results.values() for e in suite.experiments]
    try:
        width = writer.fullwidth if writer.hasmarkup else max(writer.fullwidth, LOG_WIDTH)
        lines = render_table(experiments, width=width, colour=writer.hasmarkup).splitlines()
    except Exception:  # the summary must never end a session in a traceback: plain lines instead
        lines = [f"{e.name}: {o.verdict}: {o.message}" for e in experiments for o in e.expectations]
    for line in lines:
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    sessions = config.stash.get(SESSIONS_KEY, {})
    meshes = _describe(sessions)  # before the sessions close: a mesh taken down says less about itself
    if sessions:
        from harness.pytest_items import close_sessions

        errors = close_sessions(sessions)
        for error in errors:
            config.get_terminal_writer().line(f"mesh-harness: {error}", red=True)
        if errors and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a change may be left on the mesh
    results = config.stash.get(RESULTS_KEY, {})
    target = config.getoption("harness_results")
    if target and results:
        write_results(Path(target), list(results.values()))
    alluredir = getattr(config.option, "allure_report_dir", None)
    if alluredir and (meshes or results):
        from harness.report.allure import write_categories, write_environment

        try:
            write_categories(Path(alluredir))
            write_environment(Path(alluredir), meshes)
        except OSError as exc:  # a report's extras: said, never a reason to fail the session
            config.get_terminal_writer().line(f"mesh-harness: could not write Allure's categories and "
                                              f"environment in {alluredir}: {exc}", yellow=True)


def _describe(sessions: dict[Path, MeshSession | EnvironmentUnavailable]) -> list[dict[str, str]]:
    """What the report's environment.properties says of each mesh the session ran against."""
    if not sessions:
        return []  # no suite ran: import nothing (this plugin loads in every pytest run)
    from harness import __version__
    from harness.runner.session import MeshSession

    out: list[dict[str, str]] = []
    for path, session in sessions.items():
        if not isinstance(session, MeshSession):
            continue
        env = session.env.model
        info = {"environment": env.metadata.name, "environment.file": str(path), "mesh": env.spec.mesh,
                "mtls": env.spec.mtls, "mesh-harness": __version__,
                "services": ", ".join(f"{s.name} ({'/'.join(s.versions)})" for s in env.spec.services)}
        try:
            envoy = session.mesh.status().get("envoy") or {}
            if isinstance(envoy, dict) and envoy.get("version"):
                info["envoy"] = f"{envoy['version']} ({envoy.get('source', '')})".replace(" ()", "")
        except Exception:  # a report detail: never a reason to fail the session
            pass
        out.append(info)
    return out
