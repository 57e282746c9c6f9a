"""The test tree itself: no two test modules share a basename (pytest's default import mode would refuse
to collect the second one when unit and integration tests run together, as CI runs them)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_basenames_are_unique() -> None:
    """Every tests/**/test_*.py has a name of its own."""
    names = Counter(p.name for p in TESTS.rglob("test_*.py") if "corpus" not in p.parts)
    assert [n for n, c in names.items() if c > 1] == []
