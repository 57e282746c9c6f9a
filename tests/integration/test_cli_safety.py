"""What the CLI refuses, plans and aborts: bad input exits 2 having started nothing; plan applies nothing;
abort_if stops a failing fault phase within seconds."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
from meshtools import DEMO_ENV, cli, mesh_processes

HEAD = f"""\
apiVersion: harness/v1
kind: Suite
metadata: {{name: bad}}
spec:
  environment: {DEMO_ENV}
  experiments:
"""

# name -> (document, line the problem must be reported on, a word the message must contain)
MALFORMED = {
    "syntax": (HEAD + "    - name: a\n      faults: [{kind: http-abort\n", 8, "never closed"),
    "unknown-kind": (HEAD + "    - name: a\n      faults:\n        - {kind: http-abrot, target: {service: ratings}, "
                     "percent: 5}\n", 9, "did you mean 'http-abort'"),
    "wrong-type": (HEAD + "    - name: a\n      load: {users: many}\n", 8, "integer"),
    "bad-duration": (HEAD + "    - name: a\n      phases: {fault: 10}\n", 8, "unit"),
    "percent-range": (HEAD + "    - name: a\n      faults:\n        - {kind: http-abort, target: {service: ratings}, "
                      "percent: 130}\n", 9, "100"),
    "unknown-service": (HEAD + "    - name: a\n      faults:\n        - {kind: http-abort, target: {service: "
                        "ratngs}, percent: 5}\n", 9, "ratngs"),
    "unknown-edge": (HEAD + "    - name: a\n      policy:\n        - {from: ratings, to: reviews, timeout: 1s}\n",
                     9, "not an edge"),
    "split-sum": (HEAD + "    - name: a\n      expect:\n        - {kind: traffic-split, service: reviews, split: "
                  "{v1: 50, v2: 30, v3: 30}}\n", 9, "sum to 110"),
    "duplicate-names": (HEAD + "    - name: a\n    - name: a\n", 8, "more than once"),
    "empty": ("", 1, "empty"),
    "other-kind": (DEMO_ENV.read_text(), DEMO_ENV.read_text().splitlines().index("kind: Environment") + 1,
                   "expected kind: Suite"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_run_refuses_bad_input_with_file_and_line(tmp_path: Path, case: str) -> None:
    """Exit 2 with FILE:LINE and a hint, no traceback, and no process started, for every kind of mistake."""
    text, line, word = MALFORMED[case]
    suite = tmp_path / "suite.yaml"
    suite.write_text(text)
    state = tmp_path / "state"
    result = cli("run", str(suite), state=state)
    assert result.returncode == 2, result.stderr
    assert f"{suite}:{line}:" in result.stderr, result.stderr
    assert word in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not state.exists() or not list(state.iterdir())
    assert mesh_processes(state) == []


@pytest.mark.parametrize("where", ["file-as-dir", "dir"])
def test_run_refuses_an_unwritable_results_path_before_starting(tmp_path: Path, where: str) -> None:
    """--results that cannot be written is bad input: exit 2 up front, not an error after the whole run."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(HEAD + "    - name: a\n")
    (tmp_path / "afile").write_text("")
    target = {"file-as-dir": tmp_path / "afile" / "results.json", "dir": tmp_path}[where]
    state = tmp_path / "state"
    result = cli("run", str(suite), "--results", str(target), state=state)
    assert result.returncode == 2, result.stderr
    assert f"--results {target}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not state.exists() or not list(state.iterdir())
    assert mesh_processes(state) == []


PLAN = f"""\
apiVersion: harness/v1
kind: Suite
metadata: {{name: plan-demo}}
spec:
  environment: {DEMO_ENV}
  experiments:
    - name: breaker-and-delay
      policy:
        - {{from: reviews, to: ratings, circuit_breaker: {{max_requests: 5, max_pending: 2}}}}
      phases: {{baseline: 5s, fault: 20s, recovery: 5s}}
      faults:
        - {{kind: http-delay, target: {{service: ratings}}, delay: 200ms, percent: 50}}
"""


def test_plan_names_edge_limits_delay_and_phases_and_starts_nothing(tmp_path: Path) -> None:
    """`plan` shows the breaker change on the edge, the delay's runtime keys and the phases; nothing runs."""
    suite = tmp_path / "plan.yaml"
    suite.write_text(PLAN)
    state = tmp_path / "state"
    result = cli("plan", str(suite), state=state)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "policy reviews->ratings" in out
    assert "pending=100 requests=100" in out  # before: the environment's limits
    assert "pending=2 requests=5" in out  # after: the experiment's
    assert "out_ratings_v1" in out
    assert "delay.ms -> 200" in out
    assert "ratings-v1-0" in out
    for phase in ("baseline 5s", "fault    20s", "recovery 5s"):
        assert phase in out
    assert not state.exists()
    assert mesh_processes(state) == []


ABORT = f"""\
apiVersion: harness/v1
kind: Suite
metadata: {{name: abort}}
spec:
  environment: {DEMO_ENV}
  experiments:
    - name: stops-early
      policy: [{{from: productpage, to: reviews, retries: {{attempts: 0}}}}]
      load: {{users: 10, rate: 100}}
      phases: {{baseline: 2s, fault: 40s, recovery: 2s}}
      faults: [{{kind: http-abort, target: {{service: reviews}}, percent: 60}}]
      expect:
        - {{kind: slo, signal: success_rate, scope: client, window: recovery, min: 0.9}}
      abort_if:
        - {{CONDITION}}
"""


@pytest.mark.mesh
@pytest.mark.parametrize(("condition", "signal"), [
    ("{signal: success_rate, scope: client, below: 0.6, for: 1s}", "success_rate (client)"),
    ("{signal: error_rate, scope: 'service:reviews', above: 0.4, for: 1s}", "error_rate (service:reviews)"),
], ids=["client", "sidecar"])
def test_abort_if_stops_a_long_fault_phase_within_seconds(tmp_path: Path, condition: str, signal: str) -> None:
    """A 40 s fault phase whose success collapses (at the client, or at the faulted service's sidecars)
    is aborted within seconds: verdict aborted, exit 1."""
    suite = tmp_path / "abort.yaml"
    suite.write_text(ABORT.replace("{CONDITION}", condition))
    results = tmp_path / "results.json"
    started = time.monotonic()
    result = cli("run", str(suite), "--results", str(results), state=tmp_path / "state")
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    [exp] = json.loads(results.read_text())["experiments"]
    assert exp["verdict"] == "aborted"
    assert signal in exp["aborted_by"]
    [fault] = exp["faults"]
    assert fault["removed_at"] - fault["applied_at"] < 6.0, fault
    assert elapsed < 40, "the run waited out the fault phase"
    assert exp["rollback"]["complete"] is True
    assert mesh_processes(tmp_path / "state") == []


def test_textwrap_is_used_for_readability() -> None:
    """(Guard) the suites above are valid YAML documents apart from their intended mistake."""
    assert textwrap.dedent(PLAN) == PLAN
