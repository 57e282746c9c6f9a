"""Headless Chromium for the tests that look at a rendered Allure report.

The single-file report decodes its data and renders in JavaScript; ``--virtual-time-budget`` lets the
page run that long in virtual time, but on a loaded 2-core machine the budget has been seen to run out
while the page still showed its loading spinner (CI, twice). A render is therefore retried with a larger
budget until the page shows what the test looks for; the test then asserts on the last one, so a page that
never renders still fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

import pytest

BUDGETS_MS = (20_000, 60_000, 120_000)
"""Virtual time per try: one render, then two more with more room."""


def browser_or_skip() -> str:
    """Chromium's path; skipped where it is missing, a failure in CI (``MESH_HARNESS_CI=1``)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("MESH_HARNESS_CI"):
            pytest.fail("no Chromium on PATH: CI installs Debian's chromium for this test")
        pytest.skip("no Chromium on PATH (Debian: apt install chromium)")
    return found


def chromium(browser: str, *args: str, budget_ms: int = BUDGETS_MS[0]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           f"--virtual-time-budget={budget_ms}", *args],
                          capture_output=True, text=True, timeout=240, check=False)


def rendered(browser: str, *args: str, until: Callable[[subprocess.CompletedProcess[str]], bool]
             ) -> subprocess.CompletedProcess[str]:
    """Run Chromium with ``args`` until ``until`` holds of its result, at most once per budget; the last
    result is returned either way."""
    result = chromium(browser, *args, budget_ms=BUDGETS_MS[0])
    for budget in BUDGETS_MS[1:]:
        if until(result):
            break
        result = chromium(browser, *args, budget_ms=budget)
    return result
