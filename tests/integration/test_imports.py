"""What importing harness modules costs a fresh interpreter (each demo service is one)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_a_submodule_stays_light() -> None:
    """The demo service's start-up does not pay for pydantic models, httpx or scipy."""
    code = ("import sys, harness.mesh.local.demo_service; "
            "print('pydantic' in sys.modules, 'httpx' in sys.modules, 'scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]
