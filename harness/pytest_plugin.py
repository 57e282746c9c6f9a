"""pytest plugin: ``pytest suites/`` collects each experiment of each Suite file as one test item.

Items are named ``FILE::EXPERIMENT``, tags become markers (``-m ci``), and a failed item shows its
expectation messages, not a traceback. One mesh session per environment for the whole pytest session.
Hooks only; collection lives in :mod:`harness.pytest_items`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness._errors import InputError
from harness.pytest_items import RESULTS_KEY, SESSIONS_KEY, SuiteFile, looks_like_suite
from harness.runner.results import check_results_path, write_results

__all__ = ["pytest_addoption", "pytest_collect_file", "pytest_configure", "pytest_sessionfinish"]


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
        return SuiteFile.from_parent(parent, path=file_path)
    return None


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    for mesh_session in config.stash.get(SESSIONS_KEY, {}).values():
        mesh_session.close()
    results = config.stash.get(RESULTS_KEY, {})
    target = config.getoption("harness_results")
    if target and results:
        write_results(Path(target), list(results.values()))
