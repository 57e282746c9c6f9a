"""pytest plugin: ``pytest suites/`` collects each experiment of each Suite file as one test item.

Items are named ``FILE::EXPERIMENT``, tags become markers (``-m ci``), and a failed item shows its
expectation messages, not a traceback. One mesh session per environment for the whole pytest session.
Hooks only; collection lives in :mod:`harness.pytest_items`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.pytest_items import RESULTS_KEY, SESSIONS_KEY, SuiteFile, looks_like_suite

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
        suites = [r.to_json() for r in results.values()]
        data = suites[0] if len(suites) == 1 else {
            "verdict": "pass" if all(s["verdict"] == "pass" for s in suites) else "fail", "suites": suites}
        Path(target).write_text(json.dumps(data, indent=2))
