"""Wall time of the standard suites: ``python -m pytest suites/``, as the README's Quick start runs them.

Why a subprocess: it is what a user waits for, start-up and collection included, and the suites' meshes
and Locust runs must not share this process. Its meshes get a state root of their own
(``MESH_HARNESS_STATE``), so the run neither meets nor takes down a mesh someone else started from the
same environment files. A run that fails is no measure of the suites' time (it may have stopped early),
so it raises instead of returning a number.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["SUITE_TIMEOUT_S", "standard_suite_s", "suite_command"]

SUITE_TIMEOUT_S = 900.0
"""Far above the ~4 minutes the suites take; beyond it the run is stopped and reported as failed."""
STOP_GRACE_S = 60.0
"""Time a stopped pytest gets to take its meshes down (SIGTERM unwinds it like Ctrl-C) before SIGKILL."""


def suite_command() -> list[str]:
    """``python -m pytest suites/``; no cache directory is written into the repository."""
    return [sys.executable, "-m", "pytest", "suites/", "-p", "no:cacheprovider"]


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:]) or "(no output)"
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def standard_suite_s(repo: Path, timeout_s: float = SUITE_TIMEOUT_S) -> float:
    """Seconds ``python -m pytest suites/`` takes in ``repo``; RuntimeError if it fails or times out."""
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        log = Path(tmp) / "pytest.log"
        env = {**os.environ, "MESH_HARNESS_STATE": str(Path(tmp) / "state")}
        with open(log, "wb") as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen(suite_command(), cwd=repo, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
            try:
                rc = proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"the standard suites ran longer than {timeout_s:g}s: {_tail(log)}") from None
            finally:
                _stop(proc)  # a timeout, Ctrl-C or SIGTERM here: pytest takes its meshes down, then goes
            elapsed = time.perf_counter() - t0
        if rc != 0:
            raise RuntimeError(f"pytest suites/ exited with {rc} after {elapsed:.0f}s: {_tail(log)}")
    return elapsed
