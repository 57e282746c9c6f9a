"""``metrics: {source: prometheus}`` on the local mesh, with a real Prometheus the harness starts.

A topology of our own (not the demo) is run twice through the real CLI, once reading Envoy's admin
endpoint and once reading the same sidecars through Prometheus, and every verdict must agree — each one
known beforehand from the faults' own numbers:

* ``ledger-aborts``: 40% of ledger's answers are 503. Ledger's inbound success rate is 0.6 in the fault
  window (``max: 0.75`` passes, ``min: 0.9`` fails, ``min: 0.95`` in the baseline passes); web retries
  twice, so web -> ledger fails 0.4^3 = 6.4% (``max: 0.2`` passes) and the retries oracle holds; store's
  p90 stays far under 200 ms (3 ms of work). With Prometheus, two ``promql`` bounds on the fraction of 5xx answered at
  ledger's inbound listener (0.4): ``[0.25, 0.55]`` passes, ``max: 0.1`` cannot hold and fails.
* ``ledger-v2-ejected``: every answer of ledger v2 (two replicas) is 503 and web's outlier detection may
  eject half of them: one v2 host is ejected and then gets nothing (``ejected: true`` passes — read,
  with Prometheus, from Envoy's per-endpoint stats); store is never ejected (``ejected: false`` passes).

Then: ``up`` starts Prometheus with the mesh and ``status`` names it, ``down`` stops it with the rest, and
without a ``prometheus`` on PATH ``up`` exits 3 naming the package, with nothing started.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from meshtools import REPO, cli, mesh_processes

pytestmark = pytest.mark.mesh


@pytest.fixture(scope="module", autouse=True)
def _prometheus_on_path() -> None:
    """Skipped where Prometheus is not installed, except in CI, which installs it: there it must run."""
    if shutil.which("prometheus") is None:
        if os.environ.get("MESH_HARNESS_CI"):
            pytest.fail("no prometheus on PATH: CI installs Debian's prometheus for this test")
        pytest.skip("no prometheus on PATH (Debian: apt-get install prometheus)")

ENV = """\
apiVersion: harness/v1
kind: Environment
metadata: {name: bank}
spec:
  gateway: {service: web}
  services:
    - name: web
      calls:
        - {to: ledger, retries: {attempts: 2, on: [5xx]}, timeout: 3s}
    - name: ledger
      versions: {v1: {}, v2: {replicas: 2}}
      split: {v1: 50, v2: 50}
      calls:
        - {to: store}
    - name: store
      behaviour: {latency: 3ms}
  mtls: strict
  metrics: {source: SOURCE}
"""

PROMQL = """\
        - kind: promql
          query: &ratio >-
            sum(increase(envoy_http_downstream_rq_xx{service="ledger",envoy_http_conn_manager_prefix="inbound",
            envoy_response_code_class="5"}[{{ interval }}])) / sum(increase(envoy_http_downstream_rq_completed{
            service="ledger",envoy_http_conn_manager_prefix="inbound"}[{{ interval }}]))
          min: 0.25
          max: 0.55
        - {kind: promql, query: *ratio, max: 0.1}
"""

SUITE = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: bank}
spec:
  environment: ENV
  defaults:
    load: {users: 10, rate: 100}
    phases: {baseline: 4s, fault: 6s, recovery: 2s}
  experiments:
    - name: ledger-aborts
      faults: [{kind: http-abort, target: {service: ledger}, status: 503, percent: 40}]
      expect:
        - {kind: slo, signal: success_rate, scope: "service:ledger", window: fault, max: 0.75}
        - {kind: slo, signal: success_rate, scope: "service:ledger", window: baseline, min: 0.95}
        - {kind: retries, route: {from: web, to: ledger}, window: fault, model: oracle}
        - {kind: slo, signal: error_rate, scope: "edge:web->ledger", window: fault, max: 0.2}
        - {kind: slo, signal: latency, quantile: 0.9, scope: "service:store", window: fault, max: 200ms}
        - {kind: slo, signal: success_rate, scope: "service:ledger", window: fault, min: 0.9}
PROMQL
    - name: ledger-v2-ejected
      policy: [{from: web, to: ledger, outlier_detection: {consecutive_5xx: 3, interval: 1s, base_ejection_time: 30s,
                                                          max_ejection_percent: 50}}]
      faults: [{kind: http-abort, target: {service: ledger, version: v2}, status: 503, percent: 100}]
      expect:
        - {kind: outlier-ejection, route: {from: web, to: ledger}, instance: {service: ledger, version: v2},
           window: fault, ejected: true}
        - {kind: outlier-ejection, route: {from: ledger, to: store}, instance: {service: store}, window: fault,
           ejected: false}
"""

TRUTH = {
    "ledger-aborts": ["pass", "pass", "pass", "pass", "pass", "fail"],
    "ledger-v2-ejected": ["pass", "pass"],
}
PROMQL_TRUTH = ["pass", "fail"]


def run(tmp: Path, source: str) -> tuple[int, dict[str, Any], str]:
    env = tmp / f"bank-{source}.yaml"
    env.write_text(ENV.replace("SOURCE", source))
    suite = tmp / f"suite-{source}.yaml"
    suite.write_text(SUITE.replace("ENV", str(env)).replace("PROMQL\n", PROMQL if source == "prometheus" else ""))
    results = tmp / f"results-{source}.json"
    proc = cli("run", str(suite), "--results", str(results), state=tmp / f"state-{source}")
    assert results.exists(), proc.stderr[-3000:]
    return proc.returncode, json.loads(results.read_text()), proc.stderr


def verdicts(data: dict[str, Any]) -> dict[str, list[str]]:
    return {e["name"]: [x["verdict"] for x in e["expectations"]] for e in data["experiments"]}


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, dict[str, Any], str]]:
    tmp = tmp_path_factory.mktemp("prometheus")
    return {source: run(tmp, source) for source in ("envoy", "prometheus")}


def test_the_envoy_source_gets_the_known_verdicts(both: dict[str, tuple[int, dict[str, Any], str]]) -> None:
    code, data, stderr = both["envoy"]
    assert verdicts(data) == TRUTH, (json.dumps(data["experiments"], indent=1)[-4000:], stderr[-2000:])
    assert code == 1


def test_prometheus_gets_the_same_verdicts_and_promql_can_fail(
        both: dict[str, tuple[int, dict[str, Any], str]]) -> None:
    code, data, stderr = both["prometheus"]
    got = verdicts(data)
    want = dict(TRUTH, **{"ledger-aborts": TRUTH["ledger-aborts"] + PROMQL_TRUTH})
    assert got == want, (json.dumps(data["experiments"], indent=1)[-6000:], stderr[-2000:])
    assert code == 1
    [aborts] = [e for e in data["experiments"] if e["name"] == "ledger-aborts"]
    held, failed = aborts["expectations"][-2:]
    assert 0.25 <= held["observed"] <= 0.55
    assert failed["observed"] > 0.1
    assert "outside" in failed["message"]


def test_the_two_sources_read_the_same_window_alike(both: dict[str, tuple[int, dict[str, Any], str]]) -> None:
    """The ledger's inbound success rate in the fault window: both near the truth 0.6 (each window is a
    sample of its own run, so they agree within sampling error, not exactly)."""
    rates = []
    for source in ("envoy", "prometheus"):
        [aborts] = [e for e in both[source][1]["experiments"] if e["name"] == "ledger-aborts"]
        first = aborts["expectations"][0]
        rates.append(first["observed"])
        assert first["samples"] > 200, (source, first)
    assert all(0.5 < r < 0.7 for r in rates), rates


def test_up_starts_prometheus_and_down_stops_it(tmp_path: Path) -> None:
    env = tmp_path / "bank.yaml"
    env.write_text(ENV.replace("SOURCE", "prometheus"))
    state = tmp_path / "state"
    url = ""
    try:
        up = cli("up", "--env", str(env), state=state)
        assert up.returncode == 0, up.stderr
        status = json.loads(cli("status", "--env", str(env), "--json", state=state).stdout)
        url = status["prometheus"]
        assert url.startswith("http://127.0.0.1:")
        assert any(p["name"] == "prometheus" and p["alive"] for p in status["processes"])
        targets = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        assert len(targets) == 6
        assert {t["health"] for t in targets} == {"up"}
        assert {t["labels"]["node"] for t in targets} >= {"gateway", "ledger-v2-1"}
    finally:
        down = cli("down", "--env", str(env), state=state)
    assert down.returncode == 0, down.stderr
    assert not [p for p in mesh_processes(state) if "prometheus" in p]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/-/ready", timeout=2)


def test_without_prometheus_up_exits_3_naming_the_package(tmp_path: Path) -> None:
    env = tmp_path / "bank.yaml"
    env.write_text(ENV.replace("SOURCE", "prometheus"))
    state = tmp_path / "state"
    proc = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", "up", "--env", str(env)],
                          capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
                          env=dict(os.environ, MESH_HARNESS_STATE=str(state), PATH=str(tmp_path)))
    assert proc.returncode == 3, proc.stderr
    assert "apt-get install prometheus" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not mesh_processes(state)
