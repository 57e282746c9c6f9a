"""``outlier-ejection`` on a real mesh, through the real CLI: an ejected instance that gets no traffic
passes; an instance never ejected because detection is off fails ``ejected: true``; an instance ejected
but still called (Envoy's panic mode) fails; a healthy instance passes ``ejected: false``.

The topology is the demo's with reviews-v3 run as two replicas, so that one of its hosts can be ejected
while the other keeps the cluster above Envoy's panic threshold. Every experiment aborts all requests to
reviews-v3 (``http-abort`` at the target) and sets productpage -> reviews detection for the experiment:

* ``max_ejection_percent: 50``: one host is ejected (the other is refused by the limit); the ejected host
  gets no request while ejected (pass);
* no detection on the edge (the demo declares none): never ejected (``ejected: true`` fails);
* ``max_ejection_percent: 100``: both hosts are ejected, no host is healthy, and Envoy's panic mode (the
  local mesh leaves Envoy's default 50% threshold in place) balances over the ejected hosts, so they keep
  getting traffic while ejected (``ejected: true`` fails, naming panic mode).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from meshtools import DEMO_ENV, cli, mesh_processes

pytestmark = pytest.mark.mesh
Outcome = tuple[int, dict[str, Any], str, Path]

ABORT_V3 = "faults: [{kind: http-abort, target: {service: reviews, version: v3}, status: 503, percent: 100}]"
EJECTED_V3 = ("{kind: outlier-ejection, route: {from: productpage, to: reviews}, "
              "instance: {service: reviews, version: v3}, window: fault, ejected: true")


def detection(percent: int) -> str:
    return ("policy: [{from: productpage, to: reviews, outlier_detection: {consecutive_5xx: 3, interval: 1s, "
            f"base_ejection_time: 30s, max_ejection_percent: {percent}}}}}]")


SUITE = f"""\
apiVersion: harness/v1
kind: Suite
metadata: {{name: ejection-verdicts}}
spec:
  environment: ENV
  defaults:
    load: {{users: 10, rate: 100}}
    phases: {{baseline: 2s, fault: {{min: 4s, max: 20s}}, recovery: 2s}}
  experiments:
    - name: one-host-ejected-and-left-alone
      {detection(50)}
      {ABORT_V3}
      expect:
        - {EJECTED_V3}, within: 20}}
        - {{kind: outlier-ejection, route: {{from: reviews, to: ratings}}, instance: {{service: ratings}},
           window: fault, ejected: false}}
    - name: detection-off
      {ABORT_V3}
      expect:
        - {EJECTED_V3}}}
    - name: every-host-ejected-panic-mode
      {detection(100)}
      {ABORT_V3}
      expect:
        - {EJECTED_V3}}}
"""


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    tmp = tmp_path_factory.mktemp("ejection")
    demo = DEMO_ENV.read_text()
    assert "versions: {v1: {}, v2: {}, v3: {}}" in demo, "the demo topology changed: adapt this test"
    env = tmp / "two-replicas.yaml"
    env.write_text(demo.replace("versions: {v1: {}, v2: {}, v3: {}}", "versions: {v1: {}, v2: {}, v3: {replicas: 2}}"))
    suite = tmp / "ejection.yaml"
    suite.write_text(SUITE.replace("ENV", str(env)))
    results = tmp / "results.json"
    proc = cli("run", str(suite), "--results", str(results), state=tmp / "state")
    return proc.returncode, json.loads(results.read_text()), proc.stderr, tmp / "state"


def verdicts(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    [exp] = [e for e in data["experiments"] if e["name"] == name]
    out: list[dict[str, Any]] = exp["expectations"]
    return out


class TestOutlierEjectionOnARealMesh:
    def test_run_exits_1_for_the_broken_promises(self, outcome: Outcome) -> None:
        """Two experiments break the promise by design: exit 1, no traceback."""
        code, data, stderr, _ = outcome
        assert code == 1, stderr
        assert "Traceback" not in stderr
        assert data["verdict"] == "fail"

    def test_an_ejected_host_that_gets_no_traffic_passes(self, outcome: Outcome) -> None:
        """One of reviews-v3's two hosts is ejected within 20 requests of the window and gets none while
        ejected; the other, kept by max_ejection_percent, takes the version's traffic; ratings, healthy, is
        never ejected."""
        ejected, healthy = verdicts(outcome[1], "one-host-ejected-and-left-alone")
        assert ejected["verdict"] == "pass", ejected["message"]
        assert ejected["details"]["requests_while_ejected"] == 0
        assert ejected["details"]["ejected_seconds"] > 0
        assert ejected["details"]["panic_routed"] == 0
        assert "1 of 2" in ejected["message"]
        assert healthy["verdict"] == "pass", healthy["message"]

    def test_an_instance_never_ejected_because_detection_is_off_fails(self, outcome: Outcome) -> None:
        """No outlier detection on productpage -> reviews: reviews-v3 fails every request and stays in."""
        [out] = verdicts(outcome[1], "detection-off")
        assert out["verdict"] == "fail", out["message"]
        assert out["details"]["ejected"] is False
        assert out["details"]["failed"] >= 20
        assert "outlier detection is off" in out["message"]

    def test_an_ejected_instance_still_called_in_panic_mode_fails(self, outcome: Outcome) -> None:
        """Both hosts ejected: Envoy's panic mode sends them traffic anyway, which the verdict shows and names."""
        [out] = verdicts(outcome[1], "every-host-ejected-panic-mode")
        assert out["verdict"] == "fail", out["message"]
        assert out["details"]["ejected"] is True
        assert out["details"]["requests_while_ejected"] > 0
        assert "panic mode" in out["message"]

    def test_the_mesh_is_gone(self, outcome: Outcome) -> None:
        """`run` started the mesh, so it stopped it."""
        assert mesh_processes(outcome[3]) == []
