"""Collection of Suite files into pytest items (the nonpython-example shape, with real line numbers)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness._errors import HarnessError, InputError
from harness.model.environment import Environment
from harness.model.loader import Loaded
from harness.model.suite import Experiment, Suite
from harness.runner.results import ExperimentResult, SuiteResult
from harness.runner.session import MeshSession, load_checked

__all__ = ["RESULTS_KEY", "SESSIONS_KEY", "ExperimentItem", "SuiteFile", "looks_like_suite"]

SESSIONS_KEY = pytest.StashKey[dict[Path, MeshSession]]()
RESULTS_KEY = pytest.StashKey[dict[str, SuiteResult]]()


def looks_like_suite(path: Path) -> bool:
    """Cheap sniff so that environments and unrelated YAML are never collected."""
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        return False
    return any(line.strip().replace(" ", "") == "kind:Suite" for line in head.splitlines())


class ExperimentFailed(Exception):
    """An experiment's verdict was not pass; carries the result for the report."""

    def __init__(self, result: ExperimentResult) -> None:
        super().__init__(result.verdict)
        self.result = result


class SuiteFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        env = self.config.getoption("harness_env")
        [(suite, environment)] = load_checked([self.path], env)
        for i, exp in enumerate(suite.model.spec.experiments):
            line, _ = suite.positions.at("spec", "experiments", i, "name")
            item = ExperimentItem.from_parent(self, name=exp.name, suite=suite, environment=environment,
                                              experiment=exp, line=line)
            for tag in exp.tags:
                marker = tag.replace("-", "_")
                self.config.addinivalue_line("markers", f"{marker}: mesh-harness tag")
                item.add_marker(getattr(pytest.mark, marker))
            yield item

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, HarnessError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))


class ExperimentItem(pytest.Item):
    def __init__(self, *, suite: Loaded[Suite], environment: Loaded[Environment], experiment: Experiment,
                 line: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.environment = environment
        self.experiment = experiment
        self.line = line

    def _session(self) -> MeshSession:
        sessions = self.config.stash[SESSIONS_KEY]
        session = sessions.get(self.environment.path)
        if session is None:
            session = MeshSession(self.environment)
            sessions[self.environment.path] = session
            session.open()
        return session

    def runtest(self) -> None:
        result = self._session().run_experiment(self.suite.model, self.experiment)
        results = self.config.stash[RESULTS_KEY]
        key = str(self.suite.path)
        if key not in results:
            results[key] = SuiteResult(self.suite.model.metadata.name, self.environment.model.metadata.name,
                                       dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        results[key].experiments.append(result)
        _attach_to_allure(result)
        if result.verdict != "pass":
            raise ExperimentFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        exc = excinfo.value
        if isinstance(exc, ExperimentFailed):
            head = f"{self.experiment.name}: {exc.result.verdict}"
            return "\n".join([head, *(f"  {line}" for line in exc.result.failure_lines())])
        if isinstance(exc, HarnessError | InputError):
            return f"{self.experiment.name}: {exc}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.line - 1, f"experiment: {self.experiment.name}"


def _attach_to_allure(result: ExperimentResult) -> None:
    """Attach the experiment's results JSON when allure-pytest is recording (``--alluredir``)."""
    try:
        import json

        import allure
    except ImportError:
        return
    try:
        allure.attach(json.dumps(result.to_json(), indent=2), name="results.json",
                      attachment_type=allure.attachment_type.JSON)
    except Exception:  # reporting must never change a verdict
        return
