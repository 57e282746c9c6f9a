"""``timeout`` on the real demo mesh, through the real CLI: a timeout that holds passes, and meshes that
break the promise fail.

One ``run`` of three experiments, each a temporary policy on reviews -> ratings with every ratings request
delayed 300ms (``http-delay`` at the target): a 100ms timeout cuts every call at 100ms with Envoy's 504
(pass); a 500ms timeout lets the delayed calls through, so ``at: 100ms`` is a timeout longer than declared
(fail); a 200ms timeout cuts at 200ms, not at the declared 100ms (fail).
"""

from __future__ import annotations

import pytest
from meshtools import DEMO_ENV, RunOutcome, mesh_processes, only_expectation, run_suite

pytestmark = pytest.mark.mesh
Outcome = RunOutcome


def experiment(name: str, timeout: str) -> str:
    return f"""
    - name: {name}
      policy: [{{from: reviews, to: ratings, timeout: {timeout}}}]
      faults: [{{kind: http-delay, target: {{service: ratings}}, delay: 300ms, percent: 100}}]
      expect:
        - {{kind: timeout, route: {{from: reviews, to: ratings}}, window: fault, at: 100ms}}"""


SUITE = f"""\
apiVersion: harness/v1
kind: Suite
metadata: {{name: timeout-verdicts}}
spec:
  environment: {DEMO_ENV}
  defaults:
    load: {{users: 10, rate: 100}}
    phases: {{baseline: 2s, fault: {{min: 4s, max: 20s}}, recovery: 2s}}
  experiments:{experiment("cut-at-100ms", "100ms")}{experiment("longer-than-declared", "500ms")}\
{experiment("cut-at-200ms", "200ms")}
"""


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    return run_suite(tmp_path_factory.mktemp("timeouts"), SUITE, "timeouts.yaml")


verdict = only_expectation


class TestTimeoutOnTheDemoMesh:
    def test_run_exits_1_for_the_broken_timeouts(self, outcome: Outcome) -> None:
        """Two experiments break the promise by design: exit 1, no traceback."""
        code, data, stderr, _ = outcome
        assert code == 1, stderr
        assert "Traceback" not in stderr
        assert data["verdict"] == "fail"

    def test_a_timeout_that_holds_passes(self, outcome: Outcome) -> None:
        """timeout 100ms with 300ms delays: every delayed call ends with Envoy's 504 at ~100ms, counted by the
        mesh too."""
        out = verdict(outcome[1], "cut-at-100ms")
        assert out["verdict"] == "pass", out["message"]
        assert 80 <= out["interval"][0] <= out["observed"] <= out["interval"][1] <= 120
        assert out["details"]["overlong_successes"] == 0
        assert out["details"]["timeouts_counted"] >= out["samples"] * 0.9

    def test_a_timeout_longer_than_declared_fails(self, outcome: Outcome) -> None:
        """timeout 500ms: the 300ms calls succeed, which a 100ms timeout would have cut."""
        out = verdict(outcome[1], "longer-than-declared")
        assert out["verdict"] == "fail", out["message"]
        assert "longer than 100ms" in out["message"]
        assert out["details"]["timed_out"] == 0

    def test_a_timeout_at_another_time_fails(self, outcome: Outcome) -> None:
        """timeout 200ms: calls end with 504 at ~200ms, outside 100ms ±20ms."""
        out = verdict(outcome[1], "cut-at-200ms")
        assert out["verdict"] == "fail", out["message"]
        assert out["interval"][0] > 120
        assert 180 <= out["observed"] <= 230

    def test_the_mesh_is_gone(self, outcome: Outcome) -> None:
        """`run` started the mesh, so it stopped it."""
        assert mesh_processes(outcome[3]) == []
