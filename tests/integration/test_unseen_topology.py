"""Topologies unlike the demo: replicas, weighted splits, optional calls, policies on inner edges."""

from __future__ import annotations

import collections
import json
import math
from pathlib import Path

import httpx
import pytest
from meshtools import cli, mesh_processes

from harness.mesh.local.driver import LocalMesh
from harness.model.loader import load_environment

pytestmark = pytest.mark.mesh


UNSEEN = """\
apiVersion: harness/v1
kind: Environment
metadata: {name: shop}
spec:
  gateway: {service: frontend}
  services:
    - name: frontend
      versions: {v1: {replicas: 2}}
      calls:
        - {to: recommender, optional: true}
        - {to: cart, retries: {attempts: 3, on: [5xx]}, timeout: 2s}
    - name: recommender
      behaviour: {error_rate: 1.0}
    - name: cart
      versions: {v1: {}, v2: {replicas: 2}}
      split: {v1: 80, v2: 20}
      calls:
        - {to: db, timeout: 500ms, retries: {attempts: 1, per_try_timeout: 200ms}}
    - name: db
      versions: {blue: {}, green: {}}
  mtls: permissive
"""


class TestUnseenTopology:
    def test_replicas_split_optional_calls_and_inner_policies(self, tmp_path: Path) -> None:
        """A topology unlike the demo: replicas, a weighted split, an optional failing call, inner policies."""
        env_file = tmp_path / "shop.yaml"
        env_file.write_text(UNSEEN)
        env = load_environment(env_file)
        mesh = LocalMesh.for_environment(env.model, env.path, tmp_path / "state")
        try:
            mesh.up()
            assert len(mesh.layout.of("frontend")) == 2
            assert len(mesh.layout.of("cart", "v2")) == 2
            versions: collections.Counter[str] = collections.Counter()
            dbs: collections.Counter[str] = collections.Counter()
            with httpx.Client(timeout=5) as client:
                for _ in range(400):
                    resp = client.get(mesh.gateway_url + "/")
                    assert resp.status_code == 200, resp.text
                    trace = resp.headers["x-harness-trace"].split(",")
                    # the optional recommender always fails, so it never appears; cart and db always do
                    assert trace[0] == "frontend-v1"
                    assert not any(t.startswith("recommender") for t in trace)
                    versions[trace[1]] += 1
                    dbs[trace[2]] += 1
            share_v2 = versions["cart-v2"] / 400
            assert 0.12 < share_v2 < 0.28, versions
            assert set(dbs) == {"db-blue", "db-green"}
            frontend = next(mesh.iter_envoys_of("frontend"))
            dump = httpx.get(frontend.admin + "/config_dump", params={"resource": "dynamic_route_configs"}).text
            assert '"num_retries": 3' in dump
            cart = next(mesh.iter_envoys_of("cart"))
            dump = httpx.get(cart.admin + "/config_dump", params={"resource": "dynamic_route_configs"}).text
            assert '"per_try_timeout": "0.200s"' in dump
            assert '"timeout": "0.500s"' in dump
            # permissive: a plaintext request to a sidecar's inbound port is served
            db = mesh.layout.of("db")[0]
            assert httpx.get(f"http://127.0.0.1:{db.inbound_port}/", timeout=2).status_code == 200
        finally:
            mesh.down()
            mesh.close()
        assert mesh_processes(tmp_path / "state") == []


BANK = """\
apiVersion: harness/v1
kind: Environment
metadata: {name: bank}
spec:
  gateway: {service: web-ui}
  services:
    - name: web-ui
      versions: {v1: {replicas: 2}}
      calls:
        - {to: api2, timeout: 3s}
    - name: api2
      calls:
        - {to: ledger-svc, retries: {attempts: 2, on: [5xx]}}
    - name: ledger-svc
      versions: {blue: {}, green: {replicas: 2}}
      split: {blue: 70, green: 30}
      calls:
        - {to: store-db}
    - name: store-db
      behaviour: {error_rate: 0.1}
  mtls: strict
  safety: {max_fault_percent: 60}
"""

BANK_SUITE = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: bank}
spec:
  environment: bank.yaml
  defaults:
    load: {users: 10, rate: 80}
    # max 60s: a loaded machine serving 60 requests a second still settles the SLO (0.2% inconclusive at 30s)
    phases: {baseline: 2s, fault: {min: 10s, max: 60s}, recovery: 2s}
    confidence: 0.999
  experiments:
    - name: green-aborts-behind-retries
      faults: [{kind: http-abort, target: {service: ledger-svc, version: green}, percent: 40}]
      expect:
        - {kind: retries, route: {from: api2, to: ledger-svc}, window: fault, model: oracle}
        - {kind: slo, signal: success_rate, scope: client, window: fault, min: 0.93, max: 0.99}
"""


def test_retry_oracle_on_a_version_scoped_fault(tmp_path: Path) -> None:
    """40% aborts on the green version (30% of requests) behind 2 retries, 10% errors below: success is the
    per-version mixture 0.3(1-0.46^3) + 0.7(1-0.1^3) = 0.970, not the 0.991 one pooled p=0.21 predicts.
    The oracle must pass this mesh, and the client success must sit below what pooling predicts."""
    (tmp_path / "bank.yaml").write_text(BANK)
    suite = tmp_path / "suite.yaml"
    suite.write_text(BANK_SUITE)
    results = tmp_path / "results.json"
    run = cli("run", str(suite), "--results", str(results), state=tmp_path / "state")
    assert run.returncode == 0, run.stderr
    [exp] = json.loads(results.read_text())["experiments"]
    oracle, slo = exp["expectations"]
    assert oracle["verdict"] == "pass", oracle["message"]
    # The per-version estimates near their truths (1 - 0.6 * 0.9 and 0.1), within 4 standard deviations of
    # the attempts each version saw (fixed bands of ±0.06 and ±0.04 failed ~2.8% of runs over a first look's
    # ~340 and ~540 attempts). Pooling would put both at 0.21, outside either band.
    versions = oracle["details"]["versions"]
    for version, truth in (("green", 0.46), ("blue", 0.10)):
        band = 4 * math.sqrt(truth * (1 - truth) / versions[version]["attempts"])
        assert abs(versions[version]["p"] - truth) <= band, (version, versions[version], band)
    assert slo["verdict"] == "pass", slo["message"]  # its whole interval is below 0.99 < 0.991
    assert mesh_processes(tmp_path / "state") == []
