"""The local istio mesh with the real istiod: up, status and down leave nothing behind; istiod's
translation is what configures the Envoys (Istio's cluster names, strict mTLS from the harness's SDS);
a run killed with SIGKILL while several changes are in force (one object patched twice) is put back by
``cleanup`` byte for byte; an object someone else changed is reported, not overwritten."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ISTIO_ENV
from meshtools import REPO, cli

from harness.mesh import open_driver
from harness.mesh.base import MeshDriver
from harness.model.environment import Environment
from harness.model.loader import Loaded, load_environment

pytestmark = [pytest.mark.mesh]


def _driver(state: Path) -> MeshDriver:
    env = load_environment(ISTIO_ENV)
    [state_dir] = [p.parent for p in state.glob("*/state.json")]
    return open_driver(env.model, env.path, state_dir)


def _pending(state_dir: Path) -> list[dict[str, Any]]:
    path = state_dir / "journal.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    done = {e["seq"] for e in entries if e["type"] == "done"}
    return [e for e in entries if e["type"] == "do" and e["seq"] not in done]


SUITE = f"""\
apiVersion: harness/v1
kind: Suite
metadata: {{name: killed}}
spec:
  environment: {ISTIO_ENV}
  defaults:
    load: {{users: 5, rate: 50}}
    phases: {{baseline: 1s, fault: 30s, recovery: 1s}}
  experiments:
    - name: three-changes-two-on-one-object
      policy:
        - {{from: productpage, to: reviews, retries: {{attempts: 0}}, timeout: 1s}}
      faults:
        - {{kind: http-abort, target: {{service: ratings}}, percent: 20, at: caller}}
        - kind: traffic-shift
          service: reviews
          steps: [{{split: {{v1: 90, v2: 10, v3: 0}}, hold: 15s}}, {{split: {{v1: 0, v2: 100, v3: 0}}, hold: 15s}}]
      expect:
        - {{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.0}}
"""


def test_up_status_down_and_sigkill_cleanup(istio_env: Loaded[Environment], tmp_path: Path) -> None:
    state = tmp_path / "state"
    up = cli("up", "--env", str(ISTIO_ENV), state=state)
    assert up.returncode == 0, up.stderr
    driver = _driver(state)
    try:
        status = json.loads(cli("status", "--env", str(ISTIO_ENV), "--json", state=state).stdout)
        assert status["running"] is True
        assert {p["name"] for p in status["processes"]} >= {"istiod", "sds", "envoy:gateway", "app:ratings-v1-0"}
        # istiod's own translation configures the Envoys: Istio's cluster names, and strict mTLS with the
        # SPIFFE identity of the callee (the harness's SDS serves the certificates).
        node = driver.topology().of("productpage")[0]
        admin = {n.id: n for n in driver.nodes()}[node.id].admin  # type: ignore[attr-defined]  # LocalMesh's
        clusters = httpx.get(f"{admin}/clusters").text
        assert "outbound|9082|v2|reviews.bookinfo.svc.cluster.local" in clusters
        dump = httpx.get(f"{admin}/config_dump", params={"resource": "dynamic_active_clusters"}).text
        assert "spiffe://cluster.local/ns/bookinfo/sa/reviews" in dump
        assert "sds-grpc" in dump
        baseline = driver.fingerprint()

        # A run killed with three changes in force; the reviews VirtualService carries two of them.
        suite = tmp_path / "killed.yaml"
        suite.write_text(SUITE)
        proc = subprocess.Popen([sys.executable, "-c", "from harness.cli import main; main()", "run", str(suite)],
                                cwd=REPO, env=dict(os.environ, MESH_HARNESS_STATE=str(state)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(_pending(driver.state_dir)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        assert len(_pending(driver.state_dir)) == 3
        assert driver.fingerprint() != baseline
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        cleanup = cli("cleanup", "--env", str(ISTIO_ENV), state=state)
        assert cleanup.returncode == 0, cleanup.stdout + cleanup.stderr
        assert _pending(driver.state_dir) == []
        assert driver.fingerprint() == baseline  # every Envoy's config, and every Istio object byte for byte
    finally:
        driver.close()
        down = cli("down", "--env", str(ISTIO_ENV), state=state)
        assert down.returncode == 0, down.stderr
    assert not list(state.glob("*/state.json"))
    left = [p["name"] for p in status["processes"] if _ours(p["pid"])]
    assert left == [], f"still running after down: {left}"


def _ours(pid: int) -> bool:
    """Is ``pid`` still one of this mesh's programs (istiod, an Envoy, an app, the SDS server)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(word in cmdline for word in (b"pilot-discovery", b"envoy", b"harness.mesh"))


def test_an_object_changed_by_someone_else_is_reported_not_overwritten(istio_env: Loaded[Environment],
                                                                       tmp_path: Path) -> None:
    """A VirtualService edited while a fault holds is left as the editor wrote it, and the undo says so."""
    from harness.mesh.intents import HttpFault

    driver = open_driver(istio_env.model, istio_env.path, tmp_path / "state")
    driver.up()
    try:
        prepared = driver.prepare(HttpFault("ratings", 50.0, at="caller", abort_status=503))
        driver.apply(prepared)
        [item] = prepared.do["objects"]
        config = tmp_path / "state" / "istio" / "config" / (item["key"].replace("/", "_") + ".yaml")
        edited = config.read_text().replace("value: 50.0", "value: 40.0")
        config.write_text(edited)
        with pytest.raises(Exception, match="changed since mesh-harness read it"):
            driver.undo(prepared.undo)
        assert config.read_text() == edited
    finally:
        driver.down()
        driver.close()



def test_a_change_istiod_refuses_is_taken_back_and_reported(istio_env: Loaded[Environment], tmp_path: Path) -> None:
    """istiod refuses the whole config directory while one file is invalid (here a retry policy with attempts
    0, which its validation rejects though the CRD schema allows it): the harness writes the object back as
    it was, says what istiod said, and the next change goes through."""
    from harness._errors import ConfigRejected
    from harness.mesh.base import Prepared
    from harness.mesh.intents import HttpFault

    driver = open_driver(istio_env.model, istio_env.path, tmp_path / "state")
    driver.up()
    try:
        key = "VirtualService/bookinfo/reviews"
        config = tmp_path / "state" / "istio" / "config" / "VirtualService_bookinfo_reviews.yaml"
        original = config.read_text()
        bad = original.replace("attempts: 2", "attempts: 0", 1)
        assert bad != original
        intent = HttpFault("reviews", 1.0, at="caller", abort_status=503)
        change = Prepared(intent, "bad", {"op": "istio-objects", "services": ["reviews"],
                                          "objects": [{"key": key, "expect": original, "text": bad}]}, {})
        with pytest.raises(ConfigRejected, match="attempts are set to 0"):
            driver.apply(change)
        assert config.read_text() == original
        prepared = driver.prepare(HttpFault("reviews", 100.0, at="caller", abort_status=503))
        driver.apply(prepared)
        url = driver.topology().gateway_url
        assert all(httpx.get(url + "/").status_code >= 500 for _ in range(5))
        driver.undo(prepared.undo)
    finally:
        driver.down()
        driver.close()


def test_an_undo_after_down_puts_the_files_back_and_up_starts_clean(istio_env: Loaded[Environment],
                                                                     tmp_path: Path) -> None:
    """cleanup after `down`: the undo writes the objects back without waiting for Envoys that are gone; and
    `up` writes istiod's directory afresh, so nothing a dead run created survives into the next mesh."""
    from harness.mesh.intents import HttpFault

    driver = open_driver(istio_env.model, istio_env.path, tmp_path / "state")
    driver.up()
    config = tmp_path / "state" / "istio" / "config"
    policy = ("VirtualService_", "DestinationRule_", "PeerAuthentication_")  # the others hold this up's ports
    before = {p.name: p.read_text() for p in config.glob("*.yaml") if p.name.startswith(policy)}
    prepared = driver.prepare(HttpFault("details", 100.0, at="caller", abort_status=503))
    driver.apply(prepared)
    driver.down()
    (config / "VirtualService_bookinfo_stale.yaml").write_text("left: behind\n")
    driver.undo(prepared.undo)
    try:
        driver.up()
        assert not (config / "VirtualService_bookinfo_stale.yaml").exists()
        assert {p.name: p.read_text() for p in config.glob("*.yaml") if p.name.startswith(policy)} == before
    finally:
        driver.down()
        driver.close()
