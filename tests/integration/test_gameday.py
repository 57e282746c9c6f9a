"""A game day run twice through the real CLI, on a topology of our own: each run kept, the report rebuilt
with the trend of both, ``gameday history`` showing both, a webhook told each time; then an interactive
run where the facilitator skips one experiment and aborts at the next.

The verdicts are known beforehand: ``front`` retries ``back`` twice, so with 30% of back's answers
aborted the client still succeeds 1 - 0.3^3 = 97.3% of the time (``min: 0.85`` passes), and with 60%
only 1 - 0.6^3 = 78.4% (``min: 0.95`` fails). The fault window sees ~300 requests; there a true 97.3% is
inconclusive against ``min: 0.9`` 0.37% of the time (4.6% at 200: Wilson bounds, exact binomial sum), against
0.85 about 1e-9 (4e-5 at 200), so the pass is claimed at 0.85: this test is about game days, not a bound.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from browser import browser_or_skip, rendered
from meshtools import REPO, cli, mesh_processes

from harness.runner.journal import Journal

pytestmark = pytest.mark.mesh

ENV = """\
apiVersion: harness/v1
kind: Environment
metadata: {name: twotier}
spec:
  gateway: {service: front}
  services:
    - name: front
      calls:
        - {to: back, retries: {attempts: 2, on: [5xx]}, timeout: 2s}
    - name: back
  mtls: strict
"""

SUITE = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: twotier}
spec:
  defaults:
    load: {users: 10, rate: 100}
    phases: {baseline: 1s, fault: 4s, recovery: 1s}
  experiments:
    - name: retries-hide-30
      faults: [{kind: http-abort, target: {service: back}, percent: 30}]
      expect:
        - {kind: slo, signal: success_rate, scope: client, window: fault, min: 0.85}
    - name: retries-cannot-hide-60
      faults: [{kind: http-abort, target: {service: back}, percent: 60}]
      expect:
        - {kind: slo, signal: success_rate, scope: client, window: fault, min: 0.95}
"""

GAMEDAY = """\
apiVersion: harness/v1
kind: GameDay
metadata: {name: twotier-weekly}
spec:
  environment: ENV
  suites: [SUITE]
  window: {hours: "00:00-24:00", timezone: UTC}
  history: HISTORY
  notify: [{webhook: "WEBHOOK"}]
"""

TRUTH = {"twotier::retries-hide-30": "pass", "twotier::retries-cannot-hide-60": "fail"}


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def webhook() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def gameday(tmp_path_factory: pytest.TempPathFactory, webhook: str) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("gameday")
    (tmp / "twotier-env.yaml").write_text(ENV)
    (tmp / "twotier.yaml").write_text(SUITE)
    file = tmp / "weekly.yaml"
    file.write_text(GAMEDAY.replace("ENV", str(tmp / "twotier-env.yaml")).replace("SUITE", str(tmp / "twotier.yaml"))
                    .replace("HISTORY", str(tmp / "history")).replace("WEBHOOK", webhook))
    return tmp, file, tmp / "history"


@pytest.fixture(scope="module")
def twice(gameday: tuple[Path, Path, Path]) -> list[subprocess.CompletedProcess[str]]:
    tmp, file, _ = gameday
    return [cli("gameday", str(file), state=tmp / "state", timeout=600) for _ in range(2)]


def test_each_run_gets_the_known_verdicts_and_is_kept(twice: list[subprocess.CompletedProcess[str]],
                                                     gameday: tuple[Path, Path, Path]) -> None:
    history = gameday[2]
    for proc in twice:
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
    runs = sorted((history / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        data = json.loads((run / "results.json").read_text())
        assert {f"twotier::{e['name']}": e["verdict"] for e in data["experiments"]} == TRUTH
        assert list((run / "allure-results").glob("*-result.json"))


def test_history_shows_both_runs(twice: list[subprocess.CompletedProcess[str]],
                                 gameday: tuple[Path, Path, Path]) -> None:
    tmp, file, _ = gameday
    listed = cli("gameday", "history", str(file), "--json", state=tmp / "state")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [r["experiments"] for r in runs] == [TRUTH, TRUTH]
    assert [r["verdict"] for r in runs] == ["fail", "fail"]
    assert all(r["requests"] > 500 for r in runs)
    table = cli("gameday", "history", str(file), state=tmp / "state").stdout.splitlines()
    assert len(table) == 3
    assert table[0].split()[:3] == ["run", "verdict", "passed"]
    assert table[2].split()[1:3] == ["fail", "1/2"]


def test_the_report_carries_the_trend_of_both_runs(twice: list[subprocess.CompletedProcess[str]],
                                                  gameday: tuple[Path, Path, Path]) -> None:
    _, _, history = gameday
    from harness.report.allure_cli import find_allure

    if find_allure() is None and shutil.which("npm") is None:  # nothing to build the report with
        if os.environ.get("MESH_HARNESS_CI"):
            pytest.fail("no allure and no npm: CI installs npm and Allure 3 for the report")
        pytest.skip("no allure on PATH and no npm to install Allure 3 with (Debian: apt install npm)")
    assert (history / "report" / "index.html").is_file()
    allure3 = history / "allure-history.jsonl"
    allure2 = history / "allure2-history" / "history-trend.json"
    if allure3.exists():
        points = [json.loads(line) for line in allure3.read_text().splitlines() if line.strip()]
        assert len(points) == 2
        assert all(len(p["testResults"]) == 2 for p in points)
    else:
        assert len(json.loads(allure2.read_text())) == 2
    assert "report (with the trend of 2 runs)" in twice[1].stderr
    # In a real browser: the failing experiment's History tab lists the run before this one.
    browser = browser_or_skip()
    ids = json.loads((history / "report" / "test-results.json").read_text())["byId"]
    [failing] = [i for i, t in ids.items() if t["name"] == "retries-cannot-hide-60"]
    page = f"{(history / 'report' / 'index.html').as_uri()}#{failing}/history"
    tab = re.compile(r'test-result-tab-history.*?data-testid="counter"[^>]*>(\d+)<', flags=re.DOTALL)
    dom = rendered(browser, "--dump-dom", page, until=lambda r: tab.search(r.stdout) is not None).stdout
    counter = tab.search(dom)
    assert counter is not None, dom[-2000:]
    assert counter.group(1) == "1"


def test_the_webhook_hears_each_run(twice: list[subprocess.CompletedProcess[str]]) -> None:
    posts = _Hook.received[:2]
    assert len(posts) == 2
    for post in posts:
        assert post["verdict"] == "fail"
        assert post["counts"] == {"pass": 1, "fail": 1}
        assert post["text"].startswith("game day twotier-weekly ")
        assert "FAIL (1 pass, 1 fail)" in post["text"]


def test_interactive_skip_then_abort(twice: list[subprocess.CompletedProcess[str]],
                                    gameday: tuple[Path, Path, Path]) -> None:
    tmp, file, history = gameday
    proc = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", "gameday", str(file),
                           "--interactive"], input="s\na\n", capture_output=True, text=True, cwd=REPO, timeout=300,
                          check=False, env=dict(os.environ, MESH_HARNESS_STATE=str(tmp / "state")))
    assert proc.returncode == 130, proc.stderr[-3000:]
    asked = proc.stderr.count("[c]ontinue, [s]kip, [a]bort?")
    assert asked == 2, proc.stderr[-3000:]
    assert len(list((history / "runs").iterdir())) == 3


def test_ctrl_c_rolls_back_and_leaves_nothing(twice: list[subprocess.CompletedProcess[str]],
                                             gameday: tuple[Path, Path, Path]) -> None:
    """Ctrl-C on a terminal reaches the whole foreground group: the game day waits while its child pytest
    rolls back and takes the mesh down, then exits 130 (not killed 0.25 s into the rollback)."""
    tmp, file, _ = gameday
    state = tmp / "state-interrupted"
    proc = subprocess.Popen([sys.executable, "-c", "from harness.cli import main; main()", "gameday", str(file)],
                            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=dict(os.environ, MESH_HARNESS_STATE=str(state)))
    deadline = time.monotonic() + 120
    journal = None
    while time.monotonic() < deadline and journal is None:
        # Interrupted once the first experiment's fault is journalled (applied, or about to be).
        journal = next((j for j in state.rglob("journal.jsonl") if j.read_text().strip()), None)
        time.sleep(0.1)
    assert journal is not None, "no change was journalled"
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert not mesh_processes(state), mesh_processes(state)
    pending = [u for j in state.rglob("journal.jsonl") for u in Journal(j).pending()]
    assert not pending, pending  # every change undone
