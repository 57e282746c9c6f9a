"""Puts this folder on sys.path, so unit and integration tests share helpers such as ``doccheck``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# Broken suites and environments kept as data for tests/unit/model/test_corpus.py; the mesh-harness
# plugin would otherwise collect the suites among them as tests.
collect_ignore = ["corpus"]
