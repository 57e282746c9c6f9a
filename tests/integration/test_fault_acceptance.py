"""Acceptance, on a topology unlike the demo: network, partition and process faults get the true verdict,
and each twin that claims what the mesh does not do fails.

The truths, from the environment below:
* 150ms held back on frontend->cart (a required call) shows end to end: the median request takes at
  least 150ms; "at most 100ms" is impossible and fails.
* Refusing frontend->catalog (an optional call) costs no request.
* Blackholing cart->db (required, 700ms timeout) fails every request; "90% succeed" fails.
* A frozen catalog (optional, 400ms timeout): frontend's calls to it end at 400ms with 504; a claim of
  150ms fails.
* Killing one of db's two replicas: cart's sidecars eject it (consecutive 5xx, connect failures count)
  and send it nothing while it is ejected; frontend->cart has no detection, so "cart ejected" fails.
"""

from __future__ import annotations

import json
from pathlib import Path

from meshtools import cli, mesh_processes

ENV = """\
apiVersion: harness/v1
kind: Environment
metadata: {name: store}
spec:
  gateway: {service: frontend}
  services:
    - name: frontend
      calls:
        - {to: catalog, optional: true, timeout: 400ms}
        - {to: cart, timeout: 2s}
    - name: catalog
    - name: cart
      calls:
        - to: db
          timeout: 700ms
          outlier_detection: {consecutive_5xx: 3, interval: 1s, base_ejection_time: 30s, max_ejection_percent: 50}
    - name: db
      versions: {v1: {replicas: 2}}
  mtls: strict
"""

SUITE = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: store-faults}
spec:
  environment: store.yaml
  defaults:
    load: {users: 20, rate: 150}
    phases: {baseline: 2s, fault: {min: 4s, max: 15s}, recovery: 2s}
    confidence: 0.99
  experiments:
    - name: wire-latency-shows
      faults: [{kind: net-latency, edge: {from: frontend, to: cart}, latency: 150ms}]
      expect: [{kind: slo, signal: latency, quantile: 0.5, scope: client, window: fault, min: 150ms}]
    - name: wire-latency-impossible-bound
      faults: [{kind: net-latency, edge: {from: frontend, to: cart}, latency: 150ms}]
      expect: [{kind: slo, signal: latency, quantile: 0.5, scope: client, window: fault, max: 100ms}]
    - name: optional-edge-refused
      faults: [{kind: partition, from: frontend, to: catalog, mode: reject}]
      expect: [{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.98}]
    - name: required-edge-blackholed
      faults: [{kind: partition, from: cart, to: db}]
      expect: [{kind: slo, signal: success_rate, scope: client, window: fault, max: 0.05}]
    - name: required-edge-blackholed-claimed-fine
      faults: [{kind: partition, from: cart, to: db}]
      expect: [{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.9}]
    - name: frozen-optional-call-times-out
      faults: [{kind: pause, target: {service: catalog}, count: 1}]
      expect: [{kind: timeout, route: {from: frontend, to: catalog}, window: fault, at: 400ms}]
    - name: frozen-optional-call-claimed-faster
      faults: [{kind: pause, target: {service: catalog}, count: 1}]
      expect: [{kind: timeout, route: {from: frontend, to: catalog}, window: fault, at: 150ms}]
    - name: dead-replica-ejected
      faults: [{kind: kill, target: {service: db}, count: 1}]
      expect:
        - {kind: outlier-ejection, route: {from: cart, to: db}, instance: {service: db, version: v1},
           window: fault, ejected: true}
    - name: dead-replica-claimed-ejected-without-detection
      faults: [{kind: kill, target: {service: db}, count: 1}]
      expect:
        - {kind: outlier-ejection, route: {from: frontend, to: cart}, instance: {service: cart, version: v1},
           window: fault, ejected: true}
"""

TRUTH = {
    "wire-latency-shows": "pass",
    "wire-latency-impossible-bound": "fail",
    "optional-edge-refused": "pass",
    "required-edge-blackholed": "pass",
    "required-edge-blackholed-claimed-fine": "fail",
    "frozen-optional-call-times-out": "pass",
    "frozen-optional-call-claimed-faster": "fail",
    "dead-replica-ejected": "pass",
    "dead-replica-claimed-ejected-without-detection": "fail",
}


def test_network_partition_and_process_faults_get_the_true_verdict(tmp_path: Path) -> None:
    """Every experiment's verdict is the truth computed from the topology; the mesh is left as found."""
    (tmp_path / "store.yaml").write_text(ENV)
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    results = tmp_path / "results.json"
    state = tmp_path / "state"
    run = cli("run", str(suite), "--results", str(results), state=state, timeout=900)
    assert run.returncode == 1, run.stderr
    got = {e["name"]: e for e in json.loads(results.read_text())["experiments"]}
    verdicts = {name: e["verdict"] for name, e in got.items()}
    assert verdicts == TRUTH, "\n".join(
        f"{name}: {e['verdict']} {[x['message'] for x in e['expectations']]}" for name, e in got.items()
        if e["verdict"] != TRUTH[name])
    assert all(e["rollback"]["complete"] for e in got.values())
    assert mesh_processes(state) == []
