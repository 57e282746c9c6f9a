"""The compose mesh for real (Docker engine, compose v2, the local images): a run SIGKILLed with a paused
container, a disconnected network and a toxic in force is restored by ``cleanup``; the top-level
``docker-compose.yml`` is what the generator writes and runs on its own with ``docker compose up``."""

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
from meshtools import REPO, cli

from harness.mesh import open_driver
from harness.model.environment import Environment
from harness.model.loader import Loaded

pytestmark = [pytest.mark.mesh]

ALL_AT_ONCE = ("{kind: pause, target: {service: ratings}, count: 1}, "
               "{kind: partition, from: details, to: productpage, via: network}, "
               "{kind: net-latency, edge: {from: productpage, to: reviews}, latency: 100ms}")

STEADY = """\
apiVersion: harness/v1
kind: Suite
metadata: {{name: steady}}
spec:
  environment: {env}
  defaults:
    load: {{users: 5, rate: 60}}
    phases: {{baseline: 1s, fault: 3s, recovery: 1s}}
  experiments:
    - name: steady-state
      expect:
        - {{kind: slo, signal: success_rate, scope: client, window: all, min: 0.9}}
        - {{kind: slo, signal: latency, quantile: 0.5, scope: client, window: all, max: 100ms}}
"""


@pytest.fixture(name="compose_mesh", scope="module")
def _compose_mesh(compose_env: Loaded[Environment], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The demo compose mesh, started by the CLI in a state root of its own."""
    root = tmp_path_factory.mktemp("compose-state")
    up = cli("up", "--env", str(compose_env.path), state=root)
    assert up.returncode == 0, up.stderr
    try:
        yield root
    finally:
        cli("down", "--env", str(compose_env.path), state=root)


def _driver(env: Loaded[Environment], root: Path) -> Any:
    [state] = list(root.glob("*/state.json"))
    return open_driver(env.model, env.path, state.parent)


def _pending(state_dir: Path) -> list[dict[str, Any]]:
    path = state_dir / "journal.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    done = {e["seq"] for e in entries if e["type"] == "done"}
    return [e for e in entries if e["type"] == "do" and e["seq"] not in done]


def test_sigkill_mid_fault_is_restored_by_cleanup(compose_mesh: Path, compose_env: Loaded[Environment],
                                                  tmp_path: Path) -> None:
    """Paused container, disconnected sidecar and a toxic, all in force when the run is SIGKILLed: each is
    seen in Docker and Toxiproxy, then ``cleanup`` puts the mesh back at its baseline, and it is healthy."""
    driver = _driver(compose_env, compose_mesh)
    baseline = driver.fingerprint()
    suite = tmp_path / "kill.yaml"
    case = f"    - name: case\n      phases: {{fault: 60s}}\n      faults: [{ALL_AT_ONCE}]\n"
    suite.write_text(STEADY.format(env=compose_env.path).replace("    - name: steady-state\n", case))
    proc = subprocess.Popen([sys.executable, "-c", "from harness.cli import main; main()", "run", str(suite)],
                            cwd=REPO, env=dict(os.environ, MESH_HARNESS_STATE=str(compose_mesh)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        ops = {e["undo"]["op"] for e in _pending(driver.state_dir)}
        if {"signal-clear", "network-reconnect", "wire-clear"} <= ops:
            break
        time.sleep(0.1)
    time.sleep(1.5)  # the last change is journalled before it is made
    found = driver.containers()
    assert found["ratings-v1-0"].status == "paused"
    assert not any(n.endswith("_mesh") for n in found["details-v1-0-envoy"].attrs["NetworkSettings"]["Networks"])
    assert any(driver.toxiproxy().toxics(name) for name in driver.toxiproxy().proxies())
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert _pending(driver.state_dir), "a SIGKILLed run leaves its changes for cleanup"

    clean = cli("cleanup", "--env", str(compose_env.path), state=compose_mesh)
    assert clean.returncode == 0, clean.stderr
    assert _pending(driver.state_dir) == []
    assert driver.fingerprint() == baseline
    steady = tmp_path / "steady.yaml"
    steady.write_text(STEADY.format(env=compose_env.path))
    run = cli("run", str(steady), state=compose_mesh)
    assert run.returncode == 0, run.stdout + run.stderr
    driver.close()


def test_top_level_compose_file_is_the_generated_one(compose_env: Loaded[Environment], tmp_path: Path) -> None:
    """``docker-compose.yml`` is exactly what ``mesh-harness compose-file`` writes for environments/compose.yaml,
    and ``docker compose config`` accepts it."""
    made = cli("compose-file", "--env", "environments/compose.yaml", "--output", str(tmp_path), state=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "docker-compose.yml").read_text() == (REPO / "docker-compose.yml").read_text(), (
        "docker-compose.yml is stale: regenerate it with mesh-harness compose-file --env environments/compose.yaml "
        "--output .")
    from harness.mesh.compose.engine import compose_command

    check = subprocess.run([*compose_command(), "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


def test_generated_project_runs_on_its_own(compose_env: Loaded[Environment], tmp_path: Path) -> None:
    """What a user does: write the project, ``docker compose up -d --wait`` with the local images selected
    by the variables ``compose-images`` prints, and the gateway answers through every service."""
    from harness.mesh.compose.engine import compose_command
    from harness.mesh.compose.images import wanted_images

    made = cli("compose-file", "--env", str(compose_env.path), "--output", str(tmp_path), state=tmp_path)
    assert made.returncode == 0, made.stderr
    images = wanted_images()
    env = dict(os.environ, MESH_HARNESS_ENVOY_IMAGE=images.envoy, MESH_HARNESS_DEMO_IMAGE=images.demo,
               MESH_HARNESS_TOXIPROXY_IMAGE=images.toxiproxy)
    compose = [*compose_command(), "-p", "mh-standalone-test", "-f", str(tmp_path / "docker-compose.yml")]
    up = subprocess.run([*compose, "up", "-d", "--wait", "--pull", "never"], capture_output=True, text=True,
                        env=env, cwd=tmp_path, check=False, timeout=180)
    try:
        assert up.returncode == 0, up.stderr
        text = (tmp_path / "docker-compose.yml").read_text()
        port = _gateway_port(text)
        deadline = time.monotonic() + 30
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = httpx.get(f"http://127.0.0.1:{port}/", timeout=3)
                if last.status_code == 200:
                    break
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.2)
        assert isinstance(last, httpx.Response), last
        assert last.status_code == 200, last
        trace = last.headers["x-harness-trace"]
        assert all(f"{s}-v" in trace for s in ("productpage", "details", "reviews", "ratings")), trace
    finally:
        subprocess.run([*compose, "down", "--volumes", "--timeout", "2"], capture_output=True, env=env, cwd=tmp_path,
                       check=False, timeout=120)


def _gateway_port(compose_text: str) -> int:
    """The gateway's published port in a generated compose file (its first published port)."""
    import yaml

    doc = yaml.safe_load(compose_text)
    return int(doc["services"]["gateway"]["ports"][0].split(":")[1])
