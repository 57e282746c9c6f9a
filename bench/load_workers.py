"""The rate one Locust process cannot reach, reached with Locust's own workers (``load: {workers: N}``).

Both loads ask for more than either can send (``ASKED_RPS``) from a bare Envoy that answers by itself
(``direct_response``, two worker threads), so what each achieves is the load generator's ceiling, not
the target's: one process (the baseline) against a master and ``workers`` forked workers (measured),
same users, same duration, same per-request records. The ratio says what the workers bought on this
machine; on two cores the target and the load share the CPUs, so the gain is bounded by what is left.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path

import httpx

from bench.baseline import _answers, _child, allocate_ports, bare_envoy_bootstrap, envoy_binary, wait_until
from bench.report import Result
from harness.traffic import LoadGenerator, LoadSpec

__all__ = ["ASKED_RPS", "worker_rates"]

ASKED_RPS = 20_000.0
USERS = 200


def _achieved(target: str, workdir: Path, workers: int, duration_s: float) -> float:
    """Requests per second recorded over the middle of the run (start-up and ramp cut off)."""
    gen = LoadGenerator(LoadSpec(users=USERS, rate=ASKED_RPS, duration_s=duration_s + 2, workers=workers), target,
                        workdir)
    records = []
    with gen:
        gen.wait_ready(30)
        time.sleep(1.0)  # every user started
        gen.read_new()
        t0 = time.time()
        time.sleep(duration_s)
        t1 = time.time()
        records = [r for r in gen.read_new() if t0 <= r.t < t1]
    return len(records) / (t1 - t0)


def worker_rates(workers: int, duration_s: float) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp, httpx.Client(timeout=3.0) as client:
        root = Path(tmp)
        admin_port, listener_port = allocate_ports(2)
        (root / "bootstrap.json").write_text(json.dumps(bare_envoy_bootstrap(admin_port, listener_port)))
        argv = [envoy_binary(), "-c", str(root / "bootstrap.json"), "--base-id",
                str(random.randint(1_000_000, 9_000_000)), "--concurrency", "2", "-l", "warning"]
        with _child(argv, root / "envoy.log") as proc:
            wait_until(_answers(client, f"http://127.0.0.1:{admin_port}/ready", "LIVE"), proc, "bare Envoy",
                       root / "envoy.log")
            target = f"http://127.0.0.1:{listener_port}"
            one = _achieved(target, root / "one", 0, duration_s)
            many = _achieved(target, root / "many", workers, duration_s)
    return [Result(f"load: {workers} Locust workers vs one process", many, one, unit="req/s",
                   note=f"asked {ASKED_RPS:g} req/s of a bare Envoy; {USERS} users")]
