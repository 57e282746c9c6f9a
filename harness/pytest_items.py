"""Collection of Suite files into pytest items (the nonpython-example shape, with real line numbers)."""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from harness import __version__
from harness._crash import write_crash_report
from harness._errors import HarnessError
from harness.model.environment import Environment
from harness.model.loader import Loaded
from harness.model.suite import Experiment, Suite
from harness.pytest_plugin import RESULTS_KEY, SESSIONS_KEY
from harness.report.allure import attach_experiment
from harness.runner.results import ExperimentCrashed, ExperimentResult, SuiteResult
from harness.runner.session import MeshSession, load_checked
from harness.runner.settings import resolve_experiment

__all__ = ["EnvironmentUnavailable", "ExperimentItem", "SuiteFile", "close_sessions"]


class EnvironmentUnavailable(Exception):
    """The environment's mesh could not be opened; every item of that environment fails with this.

    pytest's collector-setup pattern: the start is tried once, and its failure is reported on each item
    that needed it, instead of an assertion traceback on the second item or a restart per item.
    """

    def __init__(self, env: Loaded[Environment], cause: BaseException) -> None:
        self.cause = cause
        what = str(cause) if isinstance(cause, HarnessError) else _internal(cause)
        super().__init__(f"environment {env.model.metadata.name} ({env.path}) is not available: {what}")


def _internal(exc: BaseException) -> str:
    """One line for a bug of ours, with the crash report that holds its traceback."""
    report = write_crash_report(exc)
    where = f"the traceback is in {report}" if report else "no crash report could be written"
    return f"internal error (a bug in mesh-harness {__version__}): {exc}; {where}; please report it"


def close_sessions(sessions: dict[Path, MeshSession | EnvironmentUnavailable]) -> list[str]:
    """Close every session that opened (rollback, and down if it started the mesh); what went wrong."""
    errors = []
    for entry in sessions.values():
        if isinstance(entry, MeshSession):
            try:
                entry.close()
            except HarnessError as exc:
                errors.append(str(exc))
    _restore_sigterm()
    return errors


class ExperimentFailed(AssertionError):
    """An experiment's verdict was fail, inconclusive or aborted: the mesh did not show its promise kept.
    An AssertionError, so that reports (Allure) count it a failed test, not a broken one."""

    def __init__(self, result: ExperimentResult) -> None:
        lines = result.failure_lines()
        super().__init__(f"{result.verdict}: {lines[0]}" if lines else result.verdict)
        self.result = result


class ExperimentErrored(Exception):
    """An experiment's verdict was error: the mesh, a fault or the load failed. Not an AssertionError, so
    that reports count it a broken test, not a failed one: nothing was shown about the promise."""

    def __init__(self, result: ExperimentResult) -> None:
        super().__init__(f"error: {result.error or 'the experiment could not be carried out'}")
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
        """Problems in FILE:LINE:COL form, one per line; a bug is one line and a crash report."""
        if isinstance(excinfo.value, HarnessError):
            return str(excinfo.value)
        return _internal(excinfo.value)


def _terminated(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C: pytest then finishes the session (and its sessionfinish rolls back)."""
    raise KeyboardInterrupt(f"signal {signum}")


def _unwind_on_sigterm() -> None:
    """Once a mesh session is to be opened: SIGTERM (a cancelled CI job, a CronJob's deadline, a game day
    stopped) unwinds like Ctrl-C, so that pytest still finishes the session, which rolls back and takes
    down what it started, instead of dying with changes on the mesh. Only where SIGTERM would kill; put
    back when the sessions close (:func:`close_sessions`)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)


def _restore_sigterm() -> None:
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is _terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
        entry = sessions.get(self.environment.path)
        if isinstance(entry, EnvironmentUnavailable):
            raise entry
        if entry is not None:
            return entry
        _unwind_on_sigterm()
        session = MeshSession(self.environment)
        try:
            session.open()
        except Exception as exc:
            with contextlib.suppress(Exception):  # release the lock; stop what a half start left
                session.close()
            unavailable = EnvironmentUnavailable(self.environment, exc)
            sessions[self.environment.path] = unavailable
            raise unavailable from None
        sessions[self.environment.path] = session
        return session

    def runtest(self) -> None:
        try:
            result = self._session().run_experiment(self.suite.model, self.experiment)
        except ExperimentCrashed as exc:
            self._record(exc.result)
            raise
        self._record(result)
        attach_experiment(result, bool(getattr(self.config.option, "allure_report_dir", None)), self.suite.path,
                          self._load)
        if result.verdict == "error":
            raise ExperimentErrored(result)
        if result.verdict != "pass":
            raise ExperimentFailed(result)

    def _load(self) -> dict[str, float]:
        resolved = resolve_experiment(self.suite.model, self.experiment)
        return {"users": resolved.users, "rate (req/s)": resolved.rate, "confidence": resolved.confidence}

    def _record(self, result: ExperimentResult) -> None:
        """Keep the result for ``--results`` and the verdict table, in suite order as items run; give the
        verdict and every expectation's message to the report (``--junitxml`` writes them as properties)."""
        self.user_properties.append(("verdict", result.verdict))
        for n, outcome in enumerate(result.expectations, start=1):
            self.user_properties.append((f"expectation {n}", f"{outcome.verdict}: {outcome.kind}: {outcome.message}"))
        results = self.config.stash[RESULTS_KEY]
        key = str(self.suite.path)
        if key not in results:
            results[key] = SuiteResult(self.suite.model.metadata.name, self.environment.model.metadata.name,
                                       dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        results[key].experiments.append(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        """The verdict and its reasons, or the error, in a few lines: never a traceback."""
        exc = excinfo.value
        if isinstance(exc, ExperimentFailed | ExperimentErrored):
            head = f"{self.experiment.name}: {exc.result.verdict}"
            return "\n".join([head, *(f"  {line}" for line in exc.result.failure_lines())])
        if isinstance(exc, HarnessError | EnvironmentUnavailable):
            return f"{self.experiment.name}: {exc}"
        if isinstance(exc, ExperimentCrashed):
            return f"{self.experiment.name}: {_internal(exc.__cause__ or exc)} (rollback ran)"
        return f"{self.experiment.name}: {_internal(exc)}"

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.line - 1, f"experiment: {self.experiment.name}"
