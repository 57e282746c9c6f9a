"""The kill matrix: however a run ends, the mesh is left exactly at its baseline.

{normal end, failed expectation, exception while applying, a bug (exit 4), SIGINT, SIGTERM, SIGKILL +
cleanup} × http-abort; SIGKILL + cleanup mid-shift, mid-rotation, with a killed app, with an untrusted
leaf, and with a network fault, a partition and a paused instance all at once. (Each kind's own undo,
applied from its journalled JSON by a fresh driver, is the driver contract's: test_driver_contract.py;
what differs between these cases is what is in force when the run dies.)
After each: the driver's fingerprint (every Envoy's active clusters, listeners, harness runtime keys and
the serials of the leaf and root it serves, the apps alive and not frozen, no Toxiproxy proxy left)
equals the baseline, the journal has nothing pending, and no load generator is left; after the endings
that roll back on an error path, and after cleanup of the fault, the rotation and all at once, a
steady-state experiment passes too. A root rotation is killed
mid-rotation (its new leaves served under the overlap bundle, the old root not yet retired); after a
certificate fault, every service must also answer through the gateway (handshakes succeed everywhere,
the optional details call included, which the steady state alone would not show).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from meshtools import DEMO_ENV, REPO, cli

from harness.mesh import open_driver
from harness.model.loader import load_environment

pytestmark = [pytest.mark.mesh, pytest.mark.slow]

FAULTS = {
    "http-abort": "{kind: http-abort, target: {service: reviews}, percent: 50}",
    "http-delay": "{kind: http-delay, target: {service: ratings}, delay: 200ms, percent: 50}",
    "net-latency": "{kind: net-latency, edge: {from: reviews, to: ratings}, latency: 100ms}",
    "net-bandwidth": "{kind: net-bandwidth, edge: {from: productpage, to: details}, rate_kbps: 64}",
    "net-reset": "{kind: net-reset, edge: {from: productpage, to: details}}",
    "partition": "{kind: partition, from: productpage, to: details}",
    "partition-reject": "{kind: partition, from: reviews, to: ratings, mode: reject}",
    "kill": "{kind: kill, target: {service: ratings}, count: 1}",
    "pause": "{kind: pause, target: {service: details}, count: 1}",
    "traffic-shift": ("{kind: traffic-shift, service: reviews, steps: [{split: {v1: 90, v2: 10, v3: 0}, hold: 2s}, "
                      "{split: {v1: 0, v2: 100, v3: 0}, hold: 2s}]}"),
    # Each stage of the root rotation is held 2s, so that a SIGKILL lands between its stages.
    "cert-rotation": "{kind: cert-rotation, target: all, what: ca, hold: 2s, at: 1s}",
    "cert-untrusted": "{kind: cert-untrusted, target: {service: details}}",
}
FAULT_PHASE = {"cert-rotation": "6s"}
"""Fault phases longer than the matrix's 3s for a normal end: a root rotation held 2s per stage needs them."""
ALL_AT_ONCE = ", ".join(FAULTS[k] for k in ("net-latency", "partition", "pause"))
"""Network faults, a partition and a paused instance active together (the case SIGKILL must not strand)."""

ENDINGS = ["normal", "failed", "exception", "bug", "sigint", "sigterm", "sigkill"]
CASES = ([("http-abort", ending) for ending in ENDINGS]
         + [(kind, "sigkill") for kind in ("traffic-shift", "cert-rotation", "kill", "cert-untrusted", "all-at-once")])
"""Every ending for one fault; cleanup after SIGKILL where a run can die with more than one change in force
or in the middle of a staged one: how each kind is applied and undone is the contract's part, how a run
ends is the runner's, the same for every kind."""
STEADY_AFTER = {("http-abort", "exception"), ("http-abort", "bug"), ("http-abort", "sigkill"),
                ("cert-rotation", "sigkill"), ("all-at-once", "sigkill")}
"""Cases after which a steady-state run is made as well as the fingerprint compared: rollback on an error
path, and cleanup in a fresh process. (After the others the fingerprint equal to the baseline already
says the mesh is as it was: every Envoy's configuration and runtime, each app alive and thawed.)"""


def suite(fault: str, fault_phase: str, min_success: float) -> str:
    return f"""\
apiVersion: harness/v1
kind: Suite
metadata: {{name: matrix}}
spec:
  environment: {DEMO_ENV}
  defaults:
    load: {{users: 5, rate: 50}}
    phases: {{baseline: 1s, fault: {fault_phase}, recovery: 1s}}
  experiments:
    - name: case
      policy:
        - {{from: productpage, to: reviews, retries: {{attempts: 0}}, circuit_breaker: {{max_requests: 50}}}}
        - {{from: reviews, to: ratings, timeout: 150ms}}
      faults: [{fault}]
      expect:
        - {{kind: slo, signal: success_rate, scope: client, window: fault, min: {min_success}}}
"""


STEADY = f"""\
apiVersion: harness/v1
kind: Suite
metadata: {{name: steady}}
spec:
  environment: {DEMO_ENV}
  defaults:
    load: {{users: 5, rate: 60}}
    phases: {{baseline: 1s, fault: 3s, recovery: 1s}}
    # Run 5 times per CI run: at 0.9999 a healthy mesh fails by chance about once in 2,000 CI runs. The
    # bounds are set by what a leftover change looks like (a 50% abort: success 0.5; a 200 ms delay on half
    # of the requests: p50 above 200 ms; a stuck split) and by the ~300 requests of the window: with no
    # failure at all, 300 requests bound success above 0.95 at this confidence, not above 0.97.
    confidence: 0.9999
  experiments:
    - name: steady-state
      expect:
        - {{kind: slo, signal: success_rate, scope: client, window: all, min: 0.9}}
        - {{kind: slo, signal: latency, quantile: 0.5, scope: client, window: all, max: 100ms}}
        - {{kind: traffic-split, service: reviews, window: all, split: {{v1: 34, v2: 33, v3: 33}}}}
"""


class Mesh:
    def __init__(self, root: Path) -> None:
        self.root = root
        [self.state_file] = list(root.glob("*/state.json"))
        self.state_dir = self.state_file.parent
        layout = json.loads(self.state_file.read_text())["layout"]
        self.admins = {i["id"]: i["admin_port"] for i in layout["instances"]}
        self.admins["gateway"] = layout["gateway_admin_port"]

    def fingerprint(self) -> dict[str, Any]:
        """What the driver says any change could alter: Envoy config and runtime, app processes (alive,
        frozen), Toxiproxy proxies and toxics, interposed edges and stopped instances."""
        env = load_environment(DEMO_ENV)
        driver = open_driver(env.model, env.path, self.state_dir)
        try:
            return driver.fingerprint()
        finally:
            driver.close()

    def journal_pending(self) -> list[dict[str, Any]]:
        path = self.state_dir / "journal.jsonl"
        if not path.exists():
            return []
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        done = {e["seq"] for e in entries if e["type"] == "done"}
        return [e for e in entries if e["type"] == "do" and e["seq"] not in done]

    def wait_for_faults(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` fault undos (not policies') are pending and the last one's change is made."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(e["undo"].get("op") in FAULT_UNDOS for e in self.journal_pending()) >= count:
                time.sleep(1.0)  # the last one is journalled before it is applied: let it take effect
                return
            time.sleep(0.05)
        raise AssertionError(f"{count} fault(s) were never journalled")

    def stages(self) -> list[tuple[str, str]]:
        """(stage, event) of every certificate stage logged so far (certs/stages.jsonl)."""
        path = self.state_dir / "certs" / "stages.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [(e["stage"], e["event"]) for e in map(json.loads, lines)]

    def wait_for_stage(self, stage: str, since: int, timeout: float = 60) -> None:
        """Until a certificate change has logged ``stage`` as confirmed, after the first ``since`` entries (the
        log is the mesh's, kept across cases)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (stage, "confirmed") in self.stages()[since:]:
                return
            time.sleep(0.02)
        raise AssertionError(f"stage {stage} was never confirmed: {self.stages()}")

    def every_service_answers(self, n: int = 20) -> bool:
        """Requests through the gateway succeed and reach every service: every handshake on their way works."""
        port = json.loads(self.state_file.read_text())["layout"]["gateway_port"]
        with httpx.Client(timeout=5) as client:
            traces = [client.get(f"http://127.0.0.1:{port}/") for _ in range(n)]
        return all(r.status_code == 200 and all(f"{s}-v" in r.headers.get("x-harness-trace", "")
                                                for s in ("productpage", "details", "reviews", "ratings"))
                   for r in traces)


FAULT_UNDOS = frozenset({"runtime-clear", "wire-clear", "signal-clear", "split-restore", "certs-restore"})


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, dict[str, object]]]:
    root = tmp_path_factory.mktemp("matrix-state")
    up = cli("up", "--env", str(DEMO_ENV), state=root)
    assert up.returncode == 0, up.stderr
    m = Mesh(root)
    time.sleep(1.5)
    try:
        yield m, m.fingerprint()
    finally:
        cli("down", "--env", str(DEMO_ENV), state=root)


MAIN = "from harness.cli import main; main()"


def _failing(bug: bool) -> str:
    """The CLI with a local driver whose first fault change takes effect and then fails: as a harness
    error (FaultError), or as a bug of ours (KeyError). No hook in production code: harness.testing. The
    third change of a run is its fault's: the suite's two policy changes come first."""
    return ("from harness.testing import failing_driver, registered_driver\n"
            "with registered_driver('local', failing_driver('harness.mesh.local.driver:LocalMesh', "
            f"fail_on_apply=3, bug={bug})):\n    " + MAIN)


def _popen(args: list[str], root: Path, extra_env: dict[str, str] | None = None,
           code: str = MAIN) -> subprocess.Popen[str]:
    env = dict(os.environ, MESH_HARNESS_STATE=str(root), **(extra_env or {}))
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _locust_running(state_dir: Path) -> bool:
    pid_file = state_dir / "runs" / "load" / "locust.pid"
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().split()[0])
        return "locust" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return False


@pytest.mark.parametrize(("kind", "ending"), CASES, ids=[f"{e}-{k}" for k, e in CASES])
def test_every_ending_restores_the_baseline(mesh: tuple[Mesh, dict[str, object]], tmp_path: Path,
                                            ending: str, kind: str) -> None:
    """Whatever ends the run, the mesh's configuration equals its baseline and stays healthy."""
    m, baseline = mesh
    long_run = ending.startswith("sig")
    suite_file = tmp_path / "matrix.yaml"
    faults = ALL_AT_ONCE if kind == "all-at-once" else FAULTS[kind]
    suite_file.write_text(suite(faults, "30s" if long_run else FAULT_PHASE.get(kind, "3s"),
                                0.99 if ending == "failed" else 0.0))
    code = _failing(ending == "bug") if ending in ("exception", "bug") else MAIN
    logged = len(m.stages())
    proc = _popen(["run", str(suite_file)], m.root, None, code)
    if long_run:
        m.wait_for_faults({"all-at-once": 3, "traffic-shift": 2}.get(kind, 1))  # mid-shift: at its 2nd step
        if kind == "cert-rotation":
            m.wait_for_stage("leaves", logged)  # mid-rotation: new leaves under the overlap, old root not retired
            assert ("retire", "start") not in m.stages()[logged:]
        proc.send_signal({"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}[ending])
    _, stderr = proc.communicate(timeout=120)
    expected_rc = {"normal": 0, "failed": 1, "exception": 3, "bug": 4, "sigint": 130, "sigterm": 130,
                   "sigkill": -9}[ending]
    assert proc.returncode == expected_rc, stderr
    assert "Traceback" not in stderr
    if ending == "bug":
        report = Path(stderr.split("the traceback is in ", 1)[1].split(";", 1)[0])
        assert report.is_relative_to(m.root / "crash"), stderr
        assert "KeyError: 'a planted bug" in report.read_text()
    if ending == "sigkill":
        assert m.journal_pending(), "a SIGKILLed run leaves its changes for cleanup"
        clean = cli("cleanup", "--env", str(DEMO_ENV), state=m.root)
        assert clean.returncode == 0, clean.stderr
    assert m.journal_pending() == []
    deadline = time.monotonic() + 10
    while m.fingerprint() != baseline and time.monotonic() < deadline:
        time.sleep(0.2)
    assert m.fingerprint() == baseline
    if kind.startswith("cert-"):
        assert m.every_service_answers()
    assert not _locust_running(m.state_dir)
    if (kind, ending) not in STEADY_AFTER:
        return
    steady = tmp_path / "steady.yaml"
    steady.write_text(STEADY)
    run = cli("run", str(steady), state=m.root)
    assert run.returncode == 0, run.stderr
