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
           "pytest_sessionfinish"]

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


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    sessions = config.stash.get(SESSIONS_KEY, {})
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
