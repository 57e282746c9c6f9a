"""An acceptance-style suite on a topology of our own, on the compose mesh, each verdict checked against a
truth computed beforehand. (That the local mesh gets the same verdicts was measured when this was
written, and CI runs the bundled suites on both meshes.)

The topology is unlike the demo (replicas, an 80/20 split, retries on an inner edge, mTLS permissive,
Prometheus as the metric source), so nothing here leans on the bundled environment:

* ``cart-aborts-hidden-by-retries``: 40% aborts at cart; frontend retries cart 3 times on 5xx, so a request
  succeeds with probability 1 − 0.4⁴ = 0.9744. The retry oracle and ``min: 0.9`` pass; ``min: 0.995``
  fails. About 1,800 requests in the 20 s fault give intervals about ±0.01 wide: a true 0.9744 is then
  inconclusive against 0.995 2e-7 of the time (0.16% over the ~850 of a 10 s fault; Wilson bounds, exact
  binomial sum). Runs observed 0.957 to 0.985 on both meshes, so bounds nearer the truth (0.95, 0.99) were
  at times, honestly, inconclusive.
* ``cart-split-holds-under-aborts``: the same aborts; the declared 80/20 split holds through them (aborts hit
  both versions alike) and a claimed 50/50 fails. Its own experiment at confidence 0.9999: a point-null test
  rejects a true split 1 − confidence of the time (0.1% at 0.999 was more than this test should add to a CI
  run). The SLOs above stay at 0.99. The wrong 50/50 fails at p < 1e-50 over ~1,000 requests (10 s after
  the baseline's settle).
* ``db-cut-off-the-network`` (compose only: ``via: network``): db disconnected; every call from cart to db
  hangs until its 200 ms per-try timeout: success on the edge ≈ 0 over the 10 s fault (``max: 0.05`` passes:
  about 190 calls, none succeeding, bound the rate below 0.05; 6 s gave 115, an honest inconclusive),
  and all is back in the recovery (``min: 0.95`` passes). The edge, not the client: a request through the
  gateway takes about 1.5 s here (4 attempts at cart, each waiting out db's timeouts), so those started in
  the fault's last second end after the undo, and succeed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from meshtools import cli

from harness.model.environment import Environment
from harness.model.loader import Loaded

pytestmark = [pytest.mark.mesh]

ENVIRONMENT = """\
apiVersion: harness/v1
kind: Environment
metadata: {{name: shop-{mesh}}}
spec:
  mesh: {mesh}
  gateway: {{service: frontend}}
  services:
    - name: frontend
      versions: {{v1: {{replicas: 2}}}}
      calls:
        - {{to: cart, retries: {{attempts: 3, on: [5xx]}}, timeout: 3s}}
    - name: cart
      versions: {{v1: {{}}, v2: {{replicas: 2}}}}
      split: {{v1: 80, v2: 20}}
      calls:
        - {{to: db, timeout: 500ms, retries: {{attempts: 1, per_try_timeout: 200ms}}}}
    - name: db
  mtls: permissive
  metrics: {{source: prometheus, scrape_interval: 500ms}}
"""

SUITE = """\
apiVersion: harness/v1
kind: Suite
metadata: {{name: shop}}
spec:
  environment: {env}
  defaults:
    load: {{users: 10, rate: 100}}
    phases: {{baseline: 2s, fault: 6s, recovery: 3s}}
  experiments:
    - name: cart-aborts-hidden-by-retries
      phases: {{fault: 20s}}
      faults:
        - {{kind: http-abort, target: {{service: cart}}, status: 503, percent: 40}}
      expect:
        - {{kind: retries, route: {{from: frontend, to: cart}}}}
        - {{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.9}}
        - {{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.995}}
    - name: cart-split-holds-under-aborts
      confidence: 0.9999
      faults:
        - {{kind: http-abort, target: {{service: cart}}, status: 503, percent: 40}}
      expect:
        - {{kind: traffic-split, service: cart, window: all, split: {{v1: 80, v2: 20}}}}
        - {{kind: traffic-split, service: cart, window: all, split: {{v1: 50, v2: 50}}}}
{extra}"""

NETWORK_CUT = """\
    - name: db-cut-off-the-network
      phases: {fault: 10s, recovery: 4s}
      faults:
        - {kind: partition, from: db, to: cart, via: network}
      expect:
        - {kind: slo, signal: success_rate, scope: "edge:cart->db", window: fault, max: 0.05}
        - {kind: slo, signal: success_rate, scope: client, window: recovery, min: 0.95}
"""

TRUTH = {
    "cart-aborts-hidden-by-retries": ["pass", "pass", "fail"],
    "cart-split-holds-under-aborts": ["pass", "fail"],
    "db-cut-off-the-network": ["pass", "pass"],
}


def _run(tmp: Path, mesh: str) -> dict[str, list[str]]:
    env = tmp / f"shop-{mesh}.yaml"
    env.write_text(ENVIRONMENT.format(mesh=mesh))
    suite = tmp / f"suite-{mesh}.yaml"
    suite.write_text(SUITE.format(env=env, extra=NETWORK_CUT if mesh == "compose" else ""))
    results = tmp / f"results-{mesh}.json"
    run = cli("run", str(suite), "--results", str(results), state=tmp / f"state-{mesh}", timeout=600)
    assert run.returncode == 1, run.stdout + run.stderr  # the wrong claims fail, by design
    data: dict[str, Any] = json.loads(results.read_text())
    return {e["name"]: [x["verdict"] for x in e["expectations"]] for e in data["experiments"]}


def test_compose_gets_the_true_verdicts(compose_env: Loaded[Environment], tmp_path: Path) -> None:
    assert _run(tmp_path, "compose") == TRUTH
