"""Experiments whose true verdict is known get it, through the real CLI, Envoy and Locust.

One `run` of five experiments on the demo mesh: retries hide aborts as 1−p^(n+1) predicts (pass); the
same bound with retries switched off (fail); a retry breaker that refuses the promised retries (the oracle
fails); the declared split (pass); a split claimed wrongly (fail).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from meshtools import DEMO_ENV, cli, mesh_processes

pytestmark = pytest.mark.mesh
Outcome = tuple[int, dict[str, Any], str, Path]

SUITE = f"""\
apiVersion: harness/v1
kind: Suite
metadata: {{name: known-truth}}
spec:
  environment: {DEMO_ENV}
  defaults:
    load: {{users: 10, rate: 100}}
    # max 60s: a loaded machine serving 80 requests a second still settles min 0.95 (0.4% inconclusive at 40s)
    phases: {{baseline: 2s, fault: {{min: 8s, max: 60s}}, recovery: 2s}}
    confidence: 0.999
  experiments:
    - name: retries-hide-aborts
      faults: [{{kind: http-abort, target: {{service: reviews}}, percent: 30}}]
      expect:
        - {{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.95}}
        - {{kind: retries, route: {{from: productpage, to: reviews}}, window: fault, model: oracle}}
    - name: no-retries-misses-bound
      policy: [{{from: productpage, to: reviews, retries: {{attempts: 0}}}}]
      faults: [{{kind: http-abort, target: {{service: reviews}}, percent: 30}}]
      expect:
        - {{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.95}}
    - name: retry-breaker-starves-retries
      load: {{users: 20, rate: 150}}
      policy: [{{from: productpage, to: reviews, circuit_breaker: {{max_retries: 1}}}}]
      faults: [{{kind: http-abort, target: {{service: reviews}}, percent: 50}}]
      expect:
        - {{kind: retries, route: {{from: productpage, to: reviews}}, window: fault, model: oracle}}
    - name: declared-split
      expect:
        - {{kind: traffic-split, service: reviews, window: fault, split: {{v1: 34, v2: 33, v3: 33}}}}
    - name: wrong-split-claim
      expect:
        - {{kind: traffic-split, service: reviews, window: fault, split: {{v1: 50, v2: 25, v3: 25}}}}
"""


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    tmp = tmp_path_factory.mktemp("known-truth")
    suite = tmp / "known-truth.yaml"
    suite.write_text(SUITE)
    results = tmp / "results.json"
    state = tmp / "state"
    proc = cli("run", str(suite), "--results", str(results), state=state)
    return proc.returncode, json.loads(results.read_text()), proc.stderr, state


def _experiment(data: dict[str, Any], name: str) -> dict[str, Any]:
    [exp] = [e for e in data["experiments"] if e["name"] == name]
    return exp


class TestKnownTruth:
    def test_run_exits_1_when_any_experiment_fails(self, outcome: Outcome) -> None:
        """Three experiments fail by design, so `run` exits 1, and prints no traceback."""
        code, data, stderr, _ = outcome
        assert code == 1, stderr
        assert data["verdict"] == "fail"
        assert "Traceback" not in stderr

    def test_retries_hide_aborts_as_the_model_predicts(self, outcome: Outcome) -> None:
        """30% aborts behind 2 retries: client success ≈ 1−0.3³, and the oracle agrees."""
        exp = _experiment(outcome[1], "retries-hide-aborts")
        assert exp["verdict"] == "pass", exp
        slo, oracle = exp["expectations"]
        assert slo["observed"] > 0.95
        assert 0.2 < oracle["details"]["p"] < 0.4
        assert oracle["details"]["retries_in_force"] == 2
        assert abs(oracle["details"]["amplification"] - oracle["details"]["predicted_amplification"]) < 0.1

    def test_same_bound_fails_without_retries(self, outcome: Outcome) -> None:
        """With attempts: 0 the same aborts reach the client: about 70% success fails min 0.95."""
        exp = _experiment(outcome[1], "no-retries-misses-bound")
        assert exp["verdict"] == "fail"
        [slo] = exp["expectations"]
        assert slo["verdict"] == "fail"
        assert 0.6 < slo["observed"] < 0.8
        assert slo["interval"][1] < 0.95

    def test_oracle_fails_when_the_retry_breaker_refuses_retries(self, outcome: Outcome) -> None:
        """A retry breaker of 1 under concurrency refuses retries the policy promises: the oracle fails."""
        exp = _experiment(outcome[1], "retry-breaker-starves-retries")
        assert exp["verdict"] == "fail"
        [oracle] = exp["expectations"]
        assert oracle["verdict"] == "fail"
        assert oracle["details"]["retry_overflow"] > 0
        assert "retry circuit breaker" in oracle["message"]

    def test_declared_split_passes_and_a_wrong_claim_fails(self, outcome: Outcome) -> None:
        """The declared 34/33/33 split passes its binomial test; claiming 50/25/25 fails it."""
        assert _experiment(outcome[1], "declared-split")["verdict"] == "pass"
        wrong = _experiment(outcome[1], "wrong-split-claim")
        assert wrong["verdict"] == "fail"
        assert "contradicts" in wrong["expectations"][0]["message"]

    def test_results_json_has_the_documented_shape(self, outcome: Outcome) -> None:
        """Every field of SUITE-FORMAT §3 is present, faults carry timings, rollback is complete."""
        data = outcome[1]
        assert {"suite", "environment", "started", "verdict", "experiments"} <= set(data)
        for exp in data["experiments"]:
            assert {"name", "verdict", "duration_s", "phases", "faults", "expectations", "rollback"} <= set(exp)
            assert set(exp["phases"]) == {"baseline", "fault", "recovery"}
            assert exp["rollback"]["complete"] is True
            for fault in exp["faults"]:
                assert fault["removed_at"] > fault["applied_at"] > 0
                assert fault["activation_ms"] >= 0
            for e in exp["expectations"]:
                assert {"kind", "verdict", "observed", "interval", "samples", "expected", "message"} <= set(e)

    def test_the_mesh_started_by_run_is_gone(self, outcome: Outcome) -> None:
        """`run` brought the mesh up itself, so it took it down again."""
        assert mesh_processes(outcome[3]) == []


PLUGIN_SUITE = textwrap.dedent(f"""\
    apiVersion: harness/v1
    kind: Suite
    metadata: {{name: plugin}}
    spec:
      environment: {DEMO_ENV}
      defaults:
        load: {{users: 5, rate: 60}}
        phases: {{baseline: 1s, fault: 4s, recovery: 1s}}
      experiments:
        - name: steady
          tags: [smoke]
          expect:
            - {{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.9}}
        - name: claims-wrong-split
          tags: [split]
          expect:
            - {{kind: traffic-split, service: reviews, window: fault, split: {{v1: 80, v2: 10, v3: 10}}}}
    """)


class TestPytestPlugin:
    def test_items_markers_and_failure_messages(self, pytester: pytest.Pytester, tmp_path: Path) -> None:
        """Each experiment is FILE::EXPERIMENT; a failure shows the expectation message, not a traceback."""
        pytester.makefile(".yaml", test_plugin=PLUGIN_SUITE)
        pytester.makepyprojecttoml("[tool.pytest.ini_options]\n")
        results = tmp_path / "plugin.json"
        junit = tmp_path / "junit.xml"
        alluredir = tmp_path / "allure"
        run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:locust", "-v",
                                            "--results", str(results), "--junitxml", str(junit),
                                            "--alluredir", str(alluredir))
        run.assert_outcomes(passed=1, failed=1)
        run.stdout.fnmatch_lines(["*test_plugin.yaml::steady PASSED*", "*test_plugin.yaml::claims-wrong-split FAILED*",
                                  "*traffic-split fail: observed*contradicts the declared split*",
                                  # the verdict table, not only dots
                                  "*mesh-harness verdicts*", "experiment*verdict*expectation*observed*interval*samples",
                                  "steady *pass*slo*", "claims-wrong-split *fail*traffic-split*"])
        assert "Traceback" not in run.stdout.str()
        data = json.loads(results.read_text())
        assert [e["name"] for e in data["experiments"]] == ["steady", "claims-wrong-split"]
        # JUnit XML carries the verdict and every expectation's message, passing or not
        cases = {c.get("name"): c for c in ElementTree.parse(junit).getroot().iter("testcase")}
        props = {name: {p.get("name"): p.get("value") for p in case.iter("property")} for name, case in cases.items()}
        assert props["claims-wrong-split"]["verdict"] == "fail", props
        assert props["claims-wrong-split"]["expectation 1"].startswith("fail: traffic-split: observed"), props
        assert props["steady"]["verdict"] == "pass", props
        # Allure: a failed test (not broken) per broken promise, a step per phase, fault and expectation,
        # the timeline picture among the attachments; categories and environment for the report
        tests = {t["name"]: t for t in map(json.loads, (p.read_text() for p in alluredir.glob("*-result.json")))}
        assert tests["claims-wrong-split"]["status"] == "failed"
        assert tests["steady"]["status"] == "passed"
        steps = [st["name"] for st in tests["claims-wrong-split"]["steps"]]
        assert [st.split(":")[0] for st in steps if st.startswith("phase")] == [
            "phase baseline", "phase fault", "phase recovery"], steps
        assert any(st.startswith("fail: ") for st in steps), steps
        attachments = {a["name"]: a for a in tests["claims-wrong-split"]["attachments"]}
        assert attachments["timeline"]["type"] == "image/png"
        assert (alluredir / attachments["timeline"]["source"]).read_bytes().startswith(b"\x89PNG")
        assert {"expectations", "changes", "load", "test_plugin.yaml", "results.json"} <= set(attachments)
        assert "mesh=local" in (alluredir / "environment.properties").read_text()
        assert json.loads((alluredir / "categories.json").read_text())

    def test_unwritable_results_is_a_usage_error_before_any_mesh(self, pytester: pytest.Pytester,
                                                                   tmp_path: Path) -> None:
        """--results under a regular file stops pytest at start-up with the reason, not after the run."""
        pytester.makefile(".yaml", test_plugin=PLUGIN_SUITE)
        (tmp_path / "afile").write_text("")
        run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:locust",
                                            "--results", str(tmp_path / "afile" / "r.json"))
        assert run.ret == pytest.ExitCode.USAGE_ERROR
        run.stderr.fnmatch_lines(["ERROR: --results*afile is a file, not a directory*"])

    def test_k_and_m_select(self, pytester: pytest.Pytester) -> None:
        """-k and -m (tags become markers) select experiments before any mesh is started."""
        pytester.makefile(".yaml", test_plugin=PLUGIN_SUITE)
        run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--co", "-q", "-m", "smoke")
        run.stdout.fnmatch_lines(["*test_plugin.yaml::steady*", "*1/2 tests collected*"])
        run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--co", "-q", "-k", "wrong")
        run.stdout.fnmatch_lines(["*claims-wrong-split*", "*1/2 tests collected*"])
