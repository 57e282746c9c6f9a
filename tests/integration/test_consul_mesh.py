"""The consul mesh with a real Consul agent (environments/consul-local.yaml), one mesh for the module: a run
killed with SIGKILL while changes are in force is put back exactly by ``cleanup`` (every config entry and
sidecar registration, every Envoy's configuration); an entry someone else edits between apply and undo is
reported and left alone; ``policy()`` is read back from the entries; ``validate`` refuses what Consul cannot
do at its FILE:LINE; and ``down`` leaves no process behind."""

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

import psutil
import pytest
from conftest import CONSUL_ENV
from meshtools import REPO, cli

from harness.mesh import open_driver
from harness.mesh.consul.changes import Conflict, normalized
from harness.mesh.consul.driver import ConsulMesh
from harness.mesh.intents import PolicyOverride, SplitChange
from harness.model.environment import Environment
from harness.model.loader import Loaded

pytestmark = [pytest.mark.mesh]


def _ours(state: Path) -> list[psutil.Process]:
    """Live processes whose command line points into the state root (the agent's -pid-file, each Envoy's
    bootstrap, each demo app's state)."""
    out = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if proc.info["status"] != psutil.STATUS_ZOMBIE and any(str(state) in arg for arg in cmdline):
                out.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def _kind(proc: psutil.Process) -> str:
    """consul (the agent), envoy, keeper (the shell that forwards a stop to its Envoy), app, or other."""
    try:
        argv = proc.cmdline()
    except psutil.NoSuchProcess:
        return "gone"
    name = Path(argv[0]).name if argv else ""
    if name == "consul" and argv[1:2] == ["agent"]:
        return "consul"
    if name == "envoy":
        return "envoy"
    if name.endswith("sh") and argv[1:2] == ["-c"] and any(Path(a).name == "envoy" for a in argv):
        return "keeper"
    return "app" if "harness.mesh.local.demo_service" in argv else "other"


@pytest.fixture(name="root", scope="module")
def _root(consul_env: Loaded[Environment], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The state root of this module's one consul mesh, started as a user starts it (``mesh-harness up``)."""
    root = tmp_path_factory.mktemp("consul-state")
    up = cli("up", "--env", str(CONSUL_ENV), state=root, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield root
    finally:
        cli("down", "--env", str(CONSUL_ENV), state=root)


@pytest.fixture(name="mesh", scope="module")
def _mesh(root: Path, consul_env: Loaded[Environment]) -> Iterator[ConsulMesh]:
    """A driver object on the running mesh, as ``run`` and ``cleanup`` open one."""
    [state_dir] = [p.parent for p in root.glob("*/state.json")]
    driver = open_driver(consul_env.model, consul_env.path, state_dir)
    assert isinstance(driver, ConsulMesh)
    try:
        yield driver
    finally:
        driver.close()


def _pending(state_dir: Path) -> list[dict[str, Any]]:
    path = state_dir / "journal.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    done = {e["seq"] for e in entries if e["type"] == "done"}
    return [e for e in entries if e["type"] == "do" and e["seq"] not in done]


KILLED = f"""\
apiVersion: harness/v1
kind: Suite
metadata: {{name: killed}}
spec:
  environment: {CONSUL_ENV}
  defaults:
    load: {{users: 4, rate: 40}}
    phases: {{baseline: 1s, fault: 40s, recovery: 1s}}
  experiments:
    - name: four-changes
      policy:
        - {{from: productpage, to: reviews, retries: {{attempts: 0}}, timeout: 1s}}
      faults:
        - {{kind: http-abort, target: {{service: ratings}}, percent: 20, status: 503}}
        - {{kind: partition, from: productpage, to: details, mode: reject}}
        - kind: traffic-shift
          service: reviews
          steps: [{{split: {{v1: 0, v2: 100, v3: 0}}, hold: 40s}}]
      expect:
        - {{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.0}}
"""


def test_sigkilled_run_is_restored_exactly_by_cleanup(mesh: ConsulMesh, root: Path, tmp_path: Path) -> None:
    """Four changes in force (a service-router, a sidecar re-registered with the fault filter, a new
    service-intentions, a service-splitter), the harness killed with SIGKILL: ``cleanup`` puts every entry,
    every sidecar registration and every Envoy's configuration back as they were."""
    baseline = mesh.fingerprint()
    entries_before = {kind: mesh.api.config_entries(kind) for kind in
                      ("service-router", "service-splitter", "service-intentions", "service-defaults")}
    suite = tmp_path / "killed.yaml"
    suite.write_text(KILLED)
    proc = subprocess.Popen([sys.executable, "-c", "from harness.cli import main; main()", "run", str(suite)],
                            cwd=REPO, env=dict(os.environ, MESH_HARNESS_STATE=str(root)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 45
        while len(_pending(mesh.state_dir)) < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert len(_pending(mesh.state_dir)) == 4, _pending(mesh.state_dir)

        def in_force() -> bool:  # the last change's apply returns after its journal entry
            return (bool(mesh.sidecar_config("ratings-v1-0").get("envoy_public_listener_json"))
                    and mesh.api.config_entry("service-intentions", "details") is not None
                    and mesh.split("reviews") == {"v2": 100.0}
                    and mesh.policy("productpage", "reviews").timeout_s == 1.0)

        deadline = time.monotonic() + 10
        while not in_force() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert in_force()
        assert mesh.fingerprint() != baseline
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    cleanup = cli("cleanup", "--env", str(CONSUL_ENV), state=root)
    assert cleanup.returncode == 0, cleanup.stdout + cleanup.stderr
    assert _pending(mesh.state_dir) == []
    after = mesh.fingerprint()
    assert after["consul-entries"] == baseline["consul-entries"]
    assert after["consul-sidecars"] == baseline["consul-sidecars"]
    assert after == baseline  # and every Envoy's clusters, listeners and routes
    # Byte for byte as Consul holds them, indexes aside (the undo rewrote some: their ModifyIndex moved).
    for kind, before in entries_before.items():
        assert [normalized(e) for e in mesh.api.config_entries(kind)] == [normalized(e) for e in before], kind
    assert mesh.api.config_entry("service-intentions", "details") is None


def test_an_entry_edited_by_someone_else_is_reported_and_left_alone(mesh: ConsulMesh) -> None:
    """Between apply and undo, someone writes the reviews splitter: the undo raises Conflict and leaves their
    entry as they wrote it; a change prepared before someone's edit is refused at apply, writing nothing."""
    original = mesh.api.config_entry("service-splitter", "reviews")
    assert original is not None
    theirs = {"Kind": "service-splitter", "Name": "reviews",
              "Splits": [{"Weight": 50, "ServiceSubset": "v1"}, {"Weight": 50, "ServiceSubset": "v3"}]}
    prepared = mesh.prepare(SplitChange("reviews", (("v1", 100.0), ("v2", 0.0), ("v3", 0.0))))
    undo = json.loads(json.dumps(prepared.undo))
    try:
        mesh.apply(prepared)
        assert mesh.split("reviews") == {"v1": 100.0}
        assert mesh.api.put_config_entry(theirs)  # someone else, without check-and-set
        with pytest.raises(Conflict, match="service-splitter reviews was changed by someone else"):
            mesh.undo(undo)
        assert normalized(mesh.api.config_entry("service-splitter", "reviews")) == theirs
        assert mesh.split("reviews") == {"v1": 50.0, "v3": 50.0}

        # Prepared against their entry, then they change it again before apply: nothing is written.
        again = mesh.prepare(SplitChange("reviews", (("v1", 0.0), ("v2", 100.0), ("v3", 0.0))))
        theirs_now = {**theirs, "Splits": [{"Weight": 100, "ServiceSubset": "v3"}]}
        assert mesh.api.put_config_entry(theirs_now)
        index = mesh.api.config_entry("service-splitter", "reviews")["ModifyIndex"]  # type: ignore[index]
        with pytest.raises(Conflict):
            mesh.apply(again)
        now = mesh.api.config_entry("service-splitter", "reviews")
        assert now is not None
        assert normalized(now) == theirs_now
        assert now["ModifyIndex"] == index
    finally:
        mesh.api.put_config_entry({k: v for k, v in original.items() if k not in ("CreateIndex", "ModifyIndex")})
    assert normalized(mesh.api.config_entry("service-splitter", "reviews")) == normalized(original)


def test_policy_reads_an_override_and_the_base_after_undo(mesh: ConsulMesh) -> None:
    """An override of retries, timeout and breakers is what ``policy()`` reads back from the entries; after the
    undo it reads the environment's declared policy again."""
    declared = mesh.declared_policies()
    before_pr = mesh.policy("productpage", "reviews")
    before_rr = mesh.policy("reviews", "ratings")
    for got, want in ((before_pr, declared[("productpage", "reviews")]), (before_rr, declared[("reviews", "ratings")])):
        assert (got.retries, got.retry_on, got.timeout_s) == (want.retries, want.retry_on, want.timeout_s)
        assert (got.max_connections, got.max_pending, got.max_requests) == (
            want.max_connections, want.max_pending, want.max_requests)
    assert (before_pr.retries, before_pr.retry_on, before_pr.timeout_s) == (2, ("5xx",), 3.0)
    assert before_rr.outlier is not None
    assert (before_rr.outlier.consecutive_5xx, before_rr.outlier.interval_s, before_rr.outlier.base_ejection_time_s,
            before_rr.outlier.max_ejection_percent) == (5, 1.0, 10.0, 50)

    timeout = mesh.prepare(PolicyOverride("productpage", "reviews",
                                          {"retries": {"attempts": 1, "on": ["503", "connect-failure"]},
                                           "timeout": "250ms"}))
    breaker = mesh.prepare(PolicyOverride("reviews", "ratings",
                                          {"circuit_breaker": {"max_requests": 5},
                                           "outlier_detection": {"consecutive_5xx": 2, "interval": "2s"}}))
    mesh.apply(timeout)
    mesh.apply(breaker)
    try:
        pr = mesh.policy("productpage", "reviews")
        assert (pr.retries, set(pr.retry_on), pr.timeout_s) == (1, {"503", "connect-failure"}, 0.25)
        rr = mesh.policy("reviews", "ratings")
        assert (rr.max_connections, rr.max_pending, rr.max_requests) == (100, 100, 5)
        assert rr.outlier is not None
        assert (rr.outlier.consecutive_5xx, rr.outlier.interval_s, rr.outlier.base_ejection_time_s,
                rr.outlier.max_ejection_percent) == (2, 2.0, 10.0, 50)
        # The router is per callee: the override shows on every caller of reviews (here only productpage).
        router = mesh.api.config_entry("service-router", "reviews")
        assert router is not None
        assert router["Routes"][0]["Destination"]["RequestTimeout"] == "250ms"
    finally:
        mesh.undo(breaker.undo)
        mesh.undo(timeout.undo)
    after_pr, after_rr = mesh.policy("productpage", "reviews"), mesh.policy("reviews", "ratings")
    assert after_pr == before_pr
    assert after_rr == before_rr


REFUSED = f"""\
apiVersion: harness/v1
kind: Suite
metadata: {{name: consul-refused}}
spec:
  environment: {CONSUL_ENV}
  defaults:
    load: {{users: 2, rate: 10}}
    phases: {{baseline: 1s, fault: 2s, recovery: 1s}}
  experiments:
    - name: hang-details
      faults:
        - {{kind: partition, from: productpage, to: details, mode: blackhole}}
      expect:
        - {{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.5}}
    - name: abort-at-callers
      faults:
        - {{kind: http-abort, target: {{service: ratings}}, percent: 20, status: 503, at: caller}}
      expect:
        - {{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.5}}
"""


def test_validate_refuses_what_consul_cannot_do_at_its_line(tmp_path: Path, consul_env: Loaded[Environment]) -> None:
    suite = tmp_path / "refused.yaml"
    suite.write_text(REFUSED)
    done = cli("validate", "--env", str(CONSUL_ENV), str(suite), state=tmp_path / "state")
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    lines = REFUSED.splitlines()
    blackhole = next(i for i, line in enumerate(lines, 1) if "mode: blackhole" in line)
    caller = next(i for i, line in enumerate(lines, 1) if "at: caller" in line)
    assert f"{suite}:{blackhole}:" in out
    assert "cannot partition with mode: blackhole" in out
    assert "nothing in Consul makes a connection hang" in out
    assert f"{suite}:{caller}:" in out
    assert "cannot place http-abort at the caller" in out
    assert "Consul 1.16 has no fault injection of its own" in out


def test_status_then_down_leaves_no_process(mesh: ConsulMesh, root: Path) -> None:
    """Last in the module: ``status`` sees the agent and every Envoy; after ``down`` none of the consul agent,
    the Envoys or the apps of the state root runs."""
    status = cli("status", "--env", str(CONSUL_ENV), "--json", state=root)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["running"] is True
    names = {p["name"] for p in data["processes"]}
    assert {"consul", "envoy:gateway", "envoy:ratings-v1-0", "app:ratings-v1-0"} <= names
    running = _ours(root)
    kinds = sorted(_kind(p) for p in running)
    assert kinds == sorted(["consul"] + ["envoy", "keeper"] * len(mesh.nodes()) + ["app"] * 6), kinds
    assert len(mesh.nodes()) == 7
    mesh.close()
    down = cli("down", "--env", str(CONSUL_ENV), state=root)
    assert down.returncode == 0, down.stdout + down.stderr
    _, alive = psutil.wait_procs(running, timeout=10)
    assert alive == [], [p.pid for p in alive]
    assert _ours(root) == []
    assert not list(root.glob("*/state.json"))
