"""`pytest suites/ --alluredir D` then `mesh-harness report D --output H`: an HTML report a real headless
browser renders, with each experiment in it and its timeline picture among the attachments.

Needs Chromium (Debian: `apt install chromium`; CI installs it) and Allure (an `allure` on PATH, else
Allure 3 from npm, which `mesh-harness install allure` or the first `report` puts into the cache). Without
Chromium the test is skipped, except in CI (``MESH_HARNESS_CI=1``), where a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from browser import browser_or_skip, rendered
from meshtools import DEMO_ENV, REPO, cli

SUITE = textwrap.dedent(f"""\
    apiVersion: harness/v1
    kind: Suite
    metadata: {{name: reported}}
    spec:
      environment: {DEMO_ENV}
      defaults:
        load: {{users: 10, rate: 100}}
        phases: {{baseline: 1s, fault: 3s, recovery: 1s}}
      experiments:
        - name: aborts-shown-in-the-picture
          faults: [{{kind: http-abort, target: {{service: reviews}}, percent: 50}}]
          policy: [{{from: productpage, to: reviews, retries: {{attempts: 0}}}}]
          expect:
            - {{kind: slo, signal: success_rate, scope: client, window: fault, max: 0.7}}
        - name: claims-nothing-fails
          faults: [{{kind: http-abort, target: {{service: reviews}}, percent: 50}}]
          policy: [{{from: productpage, to: reviews, retries: {{attempts: 0}}}}]
          expect:
            - {{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.99}}
    """)


def test_the_report_renders_in_a_real_browser_with_every_experiment_and_its_picture(tmp_path: Path) -> None:
    browser = browser_or_skip()
    (tmp_path / "reported.yaml").write_text(SUITE)
    results = tmp_path / "allure-results"
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                          str(tmp_path / "reported.yaml"), "--alluredir", str(results)],
                         capture_output=True, text=True, cwd=REPO, timeout=600,
                         env=dict(os.environ, MESH_HARNESS_STATE=str(tmp_path / "state")), check=False)
    assert run.returncode == 1, run.stdout + run.stderr  # one experiment fails by design
    report = tmp_path / "report"
    made = cli("report", str(results), "--output", str(report), "--single-file", state=tmp_path / "state", timeout=600)
    assert made.returncode == 0, made.stderr
    index = Path(made.stdout.strip())
    assert index == report / "index.html"
    # Every experiment is in the rendered page (not only in the HTML's embedded data: the DOM after JS ran).
    names = ("aborts-shown-in-the-picture", "claims-nothing-fails")
    dom = rendered(browser, "--dump-dom", index.as_uri(), until=lambda r: all(n in r.stdout for n in names))
    assert dom.returncode == 0, dom.stderr[-2000:]
    for name in names:
        assert name in dom.stdout, f"{name} is not on the rendered page"
    # The picture went in as an attachment of each experiment (results JSON, as the report read it).
    tests = [json.loads(p.read_text()) for p in results.glob("*-result.json")]
    pictures = [a for t in tests for a in t["attachments"] if a["name"] == "timeline"]
    assert len(pictures) == 2
    assert all((results / a["source"]).read_bytes().startswith(b"\x89PNG") for a in pictures)
    # And a screenshot of the report is an image of some substance, not a blank page (nor the loading spinner
    # of a render whose budget ran out: about 18 KB; the rendered page is several times that).
    shot = tmp_path / "report.png"
    rendered(browser, f"--screenshot={shot}", "--window-size=1400,900", index.as_uri(),
             until=lambda _: shot.is_file() and shot.stat().st_size > 20_000)
    assert shot.is_file()
    assert shot.stat().st_size > 20_000, "a rendered report, not an empty page (or its loading spinner)"
