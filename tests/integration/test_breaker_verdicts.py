"""``circuit-breaker`` on the real demo mesh, through the real CLI: a breaker that opens passes, one whose
limit is too high to open fails ``opens: true``, and an unstressed breaker passes ``opens: false``.

Every ratings request is delayed 200ms (``http-delay`` at the target) under 20 users, so each of the three
reviews sidecars has several calls to ratings in flight. With ``max_requests: 2`` the sidecars refuse the
rest at once (503 with ``x-envoy-overloaded``); with ``max_requests: 1000`` nothing overflows.
"""

from __future__ import annotations

import pytest
from meshtools import DEMO_ENV, RunOutcome, mesh_processes, only_expectation, run_suite

pytestmark = pytest.mark.mesh
Outcome = RunOutcome

SUITE = f"""\
apiVersion: harness/v1
kind: Suite
metadata: {{name: breaker-verdicts}}
spec:
  environment: {DEMO_ENV}
  defaults:
    load: {{users: 20, rate: 200}}
    phases: {{baseline: 2s, fault: {{min: 4s, max: 20s}}, recovery: 2s}}
  experiments:
    - name: opens-at-two
      policy: [{{from: reviews, to: ratings, circuit_breaker: {{max_requests: 2}}}}]
      faults: [{{kind: http-delay, target: {{service: ratings}}, delay: 200ms, percent: 100}}]
      expect:
        - {{kind: circuit-breaker, route: {{from: reviews, to: ratings}}, window: fault, opens: true,
           max_concurrency: 2}}
    - name: limit-too-high-to-open
      policy: [{{from: reviews, to: ratings, circuit_breaker: {{max_requests: 1000, max_pending: 1000}}}}]
      faults: [{{kind: http-delay, target: {{service: ratings}}, delay: 200ms, percent: 100}}]
      expect:
        - {{kind: circuit-breaker, route: {{from: reviews, to: ratings}}, window: fault, opens: true}}
    - name: unstressed-stays-closed
      expect:
        - {{kind: circuit-breaker, route: {{from: reviews, to: ratings}}, window: fault, opens: false}}
"""


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    return run_suite(tmp_path_factory.mktemp("breakers"), SUITE, "breakers.yaml")


verdict = only_expectation


class TestCircuitBreakerOnTheDemoMesh:
    def test_run_exits_1_for_the_breaker_that_never_opens(self, outcome: Outcome) -> None:
        """One experiment breaks the promise by design: exit 1, no traceback."""
        code, data, stderr, _ = outcome
        assert code == 1, stderr
        assert "Traceback" not in stderr
        assert data["verdict"] == "fail"

    def test_a_breaker_that_opens_passes(self, outcome: Outcome) -> None:
        """max_requests 2: most requests overflow at max_requests, answered by the mesh far faster than the
        200ms calls, and ratings never sees more than 2 × 3 calling instances in flight."""
        out = verdict(outcome[1], "opens-at-two")
        assert out["verdict"] == "pass", out["message"]
        details = out["details"]
        assert details["active_overflow"] > 0
        assert details["overloaded_median_ms"] < details["callee_median_ms"] / 4
        assert max(details["max_inflight"].values()) <= 6
        assert details["calling_instances"] == 3

    def test_a_breaker_whose_limit_is_too_high_fails_opens_true(self, outcome: Outcome) -> None:
        """max_requests 1000: the same load never overflows, so `opens: true` fails, naming the limits."""
        out = verdict(outcome[1], "limit-too-high-to-open")
        assert out["verdict"] == "fail", out["message"]
        assert out["details"]["overflow"] == 0
        assert "never opened" in out["message"]
        assert "max_requests 1000" in out["message"]

    def test_an_unstressed_breaker_stays_closed(self, outcome: Outcome) -> None:
        """Declared limits of 100 under healthy load: no overflow over enough requests to have shown one."""
        out = verdict(outcome[1], "unstressed-stays-closed")
        assert out["verdict"] == "pass", out["message"]
        assert out["samples"] >= 459

    def test_the_mesh_is_gone(self, outcome: Outcome) -> None:
        """`run` started the mesh, so it stopped it."""
        assert mesh_processes(outcome[3]) == []
