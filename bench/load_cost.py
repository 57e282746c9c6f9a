"""What the harness's load generator costs: its requests per second through the gateway against a bare
Locust's, same target, users and duration.

Why this comparison: a verdict's statistics assume the load the suite asked for was sent. The harness's
locustfile records every request (and reads its headers) so verdicts can window them; if that bookkeeping
slowed Locust down much, a suite would ask for more than it can send. Both runs ask for more than either
can send (:data:`ASKED_RPS`), so each achieves what it can: the ratio is the share of a bare Locust's rate
the harness keeps. Both are started by :class:`~harness.traffic.LoadGenerator` (the bare one only swaps the
locustfile), so process handling and the way the rate is read, Locust's own ``--json`` totals, are the
same on both sides.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from harness.traffic import LoadGenerator, LoadSpec, LoadSummary

__all__ = ["ASKED_RPS", "BARE_LOCUSTFILE", "BareLoad", "load_rates"]

ASKED_RPS = 20_000.0
"""The harness's cap, far above what the demo mesh can answer on 2 cores: both loads run flat out."""
BARE_LOCUSTFILE = Path(__file__).with_name("bare_locustfile.py")
MAX_FAILED = 0.01
"""More failed requests than this share and the rate is not the gateway's: fast errors would inflate it."""
EXIT_GRACE_S = 30.0


class BareLoad(LoadGenerator):
    """The harness's load generator running the bare locustfile instead of its own."""

    def command(self) -> list[str]:
        argv = super().command()
        argv[argv.index("-f") + 1] = str(BARE_LOCUSTFILE)
        return argv


def _rate(gen: LoadGenerator, duration_s: int) -> float:
    """Run ``gen`` to its end (Locust's ``--run-time``) and return the rate Locust itself counted."""
    with gen:
        deadline = time.monotonic() + duration_s + EXIT_GRACE_S
        while gen.running and time.monotonic() < deadline:
            time.sleep(0.1)
        summary: LoadSummary = gen.stop()
    if not summary.complete or summary.rps is None or not summary.requests:
        raise RuntimeError(f"Locust ({type(gen).__name__}) gave no totals (rc {summary.returncode}): "
                           f"{gen.stderr_tail()}")
    if summary.failures > MAX_FAILED * summary.requests:
        raise RuntimeError(f"{summary.failures} of {summary.requests} requests failed ({type(gen).__name__}): "
                           "the gateway did not answer them")
    return summary.rps


def load_rates(target: str, users: int, duration_s: int, bare_first: bool = True) -> tuple[float, float]:
    """(bare Locust, harness) requests per second against ``target``, one run after the other.

    ``bare_first`` alternates between repetitions, so a drift of the machine's load weighs on both sides.
    """
    spec = LoadSpec(users=users, rate=ASKED_RPS, duration_s=duration_s)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        root = Path(tmp)

        def bare() -> float:
            return _rate(BareLoad(spec, target, root / "bare"), duration_s)

        def harness() -> float:
            return _rate(LoadGenerator(spec, target, root / "harness"), duration_s)

        if bare_first:
            bare_rps = bare()
            return bare_rps, harness()
        harness_rps = harness()
        return bare(), harness_rps
