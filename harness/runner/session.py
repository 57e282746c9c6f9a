"""A run session: suites loaded and checked, the mesh brought up if needed, experiments run, rollback.

Used by both the CLI (``run``) and the pytest plugin, so the two give the same verdicts.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import os
import signal
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from harness._errors import COMMAND_LINE, InputError, MeshError, StateCorrupt
from harness.mesh import open_driver
from harness.mesh.base import MeshDriver, MetricSource
from harness.model.environment import Environment
from harness.model.loader import STDIN_NAMES, Loaded, load_environment, load_suite
from harness.model.suite import Experiment, Suite
from harness.runner.checks import check_suite
from harness.runner.experiment import RunContext, run_experiment
from harness.runner.journal import Journal
from harness.runner.progress import Progress
from harness.runner.results import ExperimentCrashed, ExperimentResult, SuiteResult
from harness.runner.settings import resolve_experiment
from harness.runner.undo import rollback, signals_deferred
from harness.traffic.load import drop_prewarmed

__all__ = ["MeshSession", "acquire_lock", "interruptible", "load_checked", "resolve_env_path", "run_lock",
           "run_suites"]


def env_candidates(suite_path: Path | None, name: str, from_cli: bool) -> list[Path]:
    """Where an environment named ``name`` may be, in the order SUITE-FORMAT §3 gives.

    ``--env`` is a path, or a name looked up as environments/NAME.yaml. A suite's ``spec.environment``
    is resolved beside the suite file first, then in environments/ (of the working directory, then of
    the suite's project, so that suites run from anywhere).
    """
    is_path = "/" in name or name.endswith((".yaml", ".yml"))
    if from_cli or suite_path is None:
        return [Path(name)] if is_path else [Path("environments") / f"{name}.yaml"]
    here = suite_path.parent
    if is_path:
        return [Path(name)] if Path(name).is_absolute() else [here / name]
    return [here / f"{name}.yaml", Path("environments") / f"{name}.yaml",
            here.parent / "environments" / f"{name}.yaml"]


def resolve_env_path(suite_path: Path | None, suite: Suite | None, env: str | None) -> Path:
    """``--env`` wins; else the suite's ``spec.environment`` (see :func:`env_candidates`)."""
    name = env or (suite.spec.environment if suite else None)
    if not name:
        raise InputError("no environment: pass --env FILE or set spec.environment in the suite")
    if name in STDIN_NAMES:
        return Path(name)  # the loader reads standard input once
    candidates = list(dict.fromkeys(env_candidates(suite_path, name, from_cli=env is not None)))
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    folders = [str(c) for c in candidates if c.is_dir()]
    if folders:
        raise InputError(f"environment '{name}': {folders[0]} is a directory; name the Environment file in it "
                         f"(e.g. {Path(folders[0]) / 'local.yaml'})")
    message = (f"environment '{name}' not found (looked for {', '.join(str(c) for c in candidates)}); "
               "write a path to an Environment file, or pass --env FILE")
    raise InputError(message)


def load_checked(suite_paths: list[Path], env: str | None,
                 kube_scope: bool = True) -> list[tuple[Loaded[Suite], Loaded[Environment]]]:
    """Load every suite and its environment and check them together; all problems in one error.
    ``kube_scope=False``: without the kube context check (``plan``; see :func:`check_suite`)."""
    problems = []
    out = []
    for path in suite_paths:
        try:
            suite = load_suite(path)
        except InputError as exc:
            problems += exc.problems
            continue
        try:
            env_loaded = load_environment(resolve_env_path(path, suite.model, env))
        except InputError as exc:
            if env is None and suite.model.spec.environment and exc.problems[0].file == COMMAND_LINE:
                # Point at the line that named the environment.
                problems.append(suite.positions.problem(("spec", "environment"), exc.problems[0].message))
            else:
                problems += exc.problems
            continue
        found = check_suite(suite, env_loaded.model, str(env_loaded.path), env_loaded.positions, kube_scope)
        problems += found
        if not found:
            out.append((suite, env_loaded))
    if problems:
        raise InputError(list(dict.fromkeys(problems)))  # an environment's problem once, not once per suite
    return out


def acquire_lock(state_dir: Path) -> IO[str]:
    """Take the mesh's run lock (held until the returned file is closed), or explain who holds it.

    The kernel releases an flock when its holder dies, even by SIGKILL, so a killed run never leaves a
    stale lock: `cleanup` can always take it afterwards. The file itself must be a regular file this user
    can open (StateCorrupt otherwise); what it holds is only the holder's PID, for the message.
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except (FileExistsError, NotADirectoryError):
        raise StateCorrupt(state_dir, "is not a directory, so it cannot hold the mesh's state",
                           "remove it, or point MESH_HARNESS_STATE elsewhere") from None
    path = state_dir / "run.lock"
    remedy = f"remove {path} (no process can hold a lock there); the next command creates it again"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except IsADirectoryError:
        raise StateCorrupt(path, "is a directory, not a lock file", remedy) from None
    except OSError as exc:
        problem = "is a symbolic link, not a lock file" if exc.errno == errno.ELOOP else \
            f"cannot be opened ({exc.strerror or exc})"
        raise StateCorrupt(path, problem, remedy) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StateCorrupt(path, "is not a regular file", remedy)
    lock = os.fdopen(fd, "r+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = lock.read(32).strip()
        lock.close()
        who = f"pid {holder}" if holder.isdigit() else "pid unknown"
        raise MeshError(f"another mesh-harness process ({who}) is acting on this mesh ({state_dir}); "
                        "wait for it to finish") from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


@contextmanager
def run_lock(state_dir: Path) -> Iterator[None]:
    """Hold the mesh's run lock for the block (see :func:`acquire_lock`)."""
    lock = acquire_lock(state_dir)
    try:
        yield
    finally:
        lock.close()


class _Interrupted(KeyboardInterrupt):
    """SIGTERM, turned into the same unwinding path as Ctrl-C so that rollback runs."""


@contextmanager
def interruptible() -> Iterator[None]:
    """Make SIGINT and SIGTERM unwind like Ctrl-C for the duration, so ``finally`` blocks roll back.

    SIGINT is installed explicitly too: a run started in the background by a non-interactive shell
    inherits SIGINT as ignored, and ``kill -INT`` must still stop it cleanly.
    """
    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass
class MeshSession:
    """A mesh for one environment, up for the session; taken down at the end if we started it."""

    env: Loaded[Environment]
    state_dir: Path | None = None
    on_event: Callable[[str], None] = field(default=lambda m: None)
    on_progress: Callable[[Progress], None] | None = None
    mesh: MeshDriver = field(init=False)
    started_here: bool = False
    _source: MetricSource | None = None
    _gateway_url: str = ""
    _lock: IO[str] | None = None

    def __post_init__(self) -> None:
        self.mesh = open_driver(self.env.model, self.env.path, self.state_dir)

    def open(self) -> None:
        self._lock = acquire_lock(self.mesh.state_dir)
        if not self.mesh.is_up():
            self.on_event(f"starting the {self.mesh.name} mesh")
            self.mesh.up(on_event=self.on_event)
            self.started_here = True
        else:
            # A previous run may have been killed with changes applied: undo them before anything else.
            _, errors = rollback(self.mesh, self.journal)
            if errors:
                raise MeshError("changes left by an earlier run could not be undone: " + "; ".join(errors)
                                + f"; see {self.mesh.logs_hint()}, then run: mesh-harness cleanup")
        self._gateway_url = self.mesh.topology().gateway_url
        self._source = self.mesh.metric_source(self.env.model.spec.metrics.scrape_interval)
        self._source.start()

    @property
    def journal(self) -> Journal:
        return Journal(self.mesh.state_dir / "journal.jsonl")

    def run_experiment(self, suite: Suite, exp: Experiment) -> ExperimentResult:
        assert self._source is not None, "open() first"
        ctx = RunContext(self.mesh, self.env.model, self.journal, self._source, self._gateway_url,
                         self.mesh.state_dir / "runs", self.on_event, self.on_progress)
        return run_experiment(ctx, resolve_experiment(suite, exp))

    def close(self) -> None:
        """Roll back, stop scraping, take the mesh down if this session started it; each step runs even
        when an earlier one fails, and the lock is released last."""
        errors: list[str] = []
        try:
            with signals_deferred():
                for step in (self._rollback, self._stop_source, self._down):
                    try:
                        step()
                    except Exception as exc:
                        errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            drop_prewarmed()  # a Locust started for an experiment that will not come
            self.mesh.close()
            if self._lock is not None:
                self._lock.close()
                self._lock = None
        if errors:
            raise MeshError("closing the session: " + "; ".join(errors) + "; run: mesh-harness cleanup")

    def _rollback(self) -> None:
        _, errors = rollback(self.mesh, self.journal)
        if errors:
            raise MeshError("; ".join(errors))

    def _stop_source(self) -> None:
        if self._source is not None:
            self._source.close()

    def _down(self) -> None:
        if self.started_here:
            self.on_event(f"stopping the {self.mesh.name} mesh")
            resisted = self.mesh.down()
            if resisted:
                raise MeshError(f"could not stop: {', '.join(resisted)}")


def run_suites(pairs: list[tuple[Loaded[Suite], Loaded[Environment]]], select: Callable[[Suite, Experiment], bool],
               on_event: Callable[[str], None], on_result: Callable[[ExperimentResult], None],
               results: list[SuiteResult] | None = None,
               on_progress: Callable[[Progress], None] | None = None) -> list[SuiteResult]:
    """Run the selected experiments of every suite, one mesh session per environment.

    Results are appended to ``results`` as they are reached (when given), so that a caller still has
    the verdicts of finished experiments if a later one is interrupted or hits a bug.
    """
    results = [] if results is None else results
    sessions: dict[Path, MeshSession] = {}
    try:
        for suite, env in pairs:
            chosen = [e for e in suite.model.spec.experiments if select(suite.model, e)]
            result = SuiteResult(suite.model.metadata.name, env.model.metadata.name,
                                 dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
            results.append(result)
            if not chosen:
                continue
            session = sessions.get(env.path)
            if session is None:
                session = MeshSession(env, on_event=on_event, on_progress=on_progress)
                sessions[env.path] = session
                session.open()
            for exp in chosen:
                on_event(f"experiment {suite.model.metadata.name}::{exp.name}")
                try:
                    outcome = session.run_experiment(suite.model, exp)
                except ExperimentCrashed as exc:
                    result.experiments.append(exc.result)
                    raise
                result.experiments.append(outcome)
                on_result(outcome)
    finally:
        # Every session is closed, whatever the others do; a failure to close is reported only when no
        # other error is already on its way out (which must not be replaced by it).
        close_errors: list[MeshError] = []
        for session in sessions.values():
            try:
                session.close()
            except MeshError as exc:
                close_errors.append(exc)
                on_event(str(exc))
    if close_errors:
        raise close_errors[0]
    return results

