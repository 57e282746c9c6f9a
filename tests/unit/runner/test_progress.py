"""What a run shows while it runs: the figures over the last seconds, and how they reach a terminal or a log."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from rich.console import Console

from harness.model.loader import load_environment, load_suite
from harness.report.live import LOG_EVERY_S, LiveProgress
from harness.runner.experiment import RunContext, _Experiment
from harness.runner.journal import Journal
from harness.runner.progress import Progress, recent
from harness.runner.settings import resolve_experiment
from harness.testing import FakeMesh, FakeSource
from harness.traffic.load import Record

REPO = Path(__file__).resolve().parents[3]


def records(now: float) -> list[Record]:
    """10 s of 100 req/s; in the last 2 s, one request in ten is a 503 and one in a hundred takes 900 ms."""
    out = []
    for i in range(1000):
        t = now - 10 + i * 0.01
        recent_part = t >= now - 2
        status = 503 if recent_part and i % 10 == 0 else 200
        latency = 900.0 if recent_part and i % 100 == 5 else 5.0
        out.append(Record(t, latency, status, "v1", ""))
    return out


def test_recent_figures_are_over_the_last_seconds_only() -> None:
    now = 1_000.0
    rps, success, p99 = recent(records(now - 0.01), now)  # every request ended 5 ms after it started
    assert rps == pytest.approx(100, rel=0.02)
    assert success == pytest.approx(0.9, abs=0.01)
    assert p99 == 900.0
    assert recent([], now) == (0.0, None, None)


def test_recent_figures_count_requests_as_they_end_even_when_slow_ones_come_last() -> None:
    """A 3 s delay: requests that started 3 s ago end now; a slow one last in the list (records come by
    completion) does not hide the ones before it."""
    now = 1_000.0
    done = [Record(now - 3.0 - 0.01 * i, 3000.0, 200, "v1", "") for i in range(200)][::-1]
    done.append(Record(now - 30.0, 29_000.0, 503, "v1", ""))  # a very slow one, just completed
    rps, success, p99 = recent(done, now)
    assert rps == pytest.approx(201 / 2.0, rel=0.01)
    assert success == pytest.approx(200 / 201)
    assert p99 == 3000.0


def test_a_plain_log_gets_a_line_per_phase_and_not_more_often_than_every_few_seconds() -> None:
    buffer = io.StringIO()
    with LiveProgress(Console(file=buffer, width=200)) as live:
        assert live.live is None, "not a terminal: no live display"
        p = Progress("exp", "fault", 3.0, 250.0, 0.97, 12.0, ("http-abort",))
        live.progress(p)
        live.progress(p)  # same phase, right after: not printed again
        live.progress(Progress("exp", "recovery", 2.0, 250.0, 1.0, 8.0, ()))
    lines = buffer.getvalue().splitlines()
    assert lines == ["exp · fault (3s left) · 250 req/s · success 97.0% · p99 12 ms · faults: http-abort",
                     "exp · recovery (2s left) · 250 req/s · success 100.0% · p99 8 ms · faults: none"]
    assert LOG_EVERY_S >= 1


SUITE = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: progress}
spec:
  defaults:
    phases: {baseline: 300ms, fault: 1200ms, recovery: 300ms}
    settle: 100ms
  experiments:
    - name: watched
      faults: [{kind: http-abort, target: {service: ratings}, percent: 10}]
      expect: [{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.5}]
"""


def test_the_runner_reports_the_phase_time_left_and_the_faults_in_force(tmp_path: Path) -> None:
    env = load_environment(REPO / "environments" / "local.yaml")
    (tmp_path / "suite.yaml").write_text(SUITE)
    suite = load_suite(tmp_path / "suite.yaml").model
    mesh = FakeMesh.for_environment(env.model, env.path, tmp_path)
    source = FakeSource({n.id: n for n in mesh.topology().nodes})
    seen: list[Progress] = []
    ctx = RunContext(mesh, env.model, Journal(tmp_path / "journal.jsonl"), source, "http://127.0.0.1:9", tmp_path,
                     on_progress=seen.append)
    x = _Experiment(ctx, resolve_experiment(suite, suite.spec.experiments[0]))
    x.records = records(time.time() + 1.0)
    x.run_phase(x.r.phases[1])
    assert seen, "the callback heard from the fault phase"
    assert {p.phase for p in seen} == {"fault"}
    assert all(p.faults == ("http-abort",) for p in seen)
    assert all(0 <= p.left_s <= 1.2 for p in seen)
    assert seen[0].rps > 0
