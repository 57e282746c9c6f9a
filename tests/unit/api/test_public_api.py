"""The public surface is exactly what harness/__init__.py declares."""

from __future__ import annotations

import harness


def test_all_names_exist_and_are_sorted() -> None:
    """Every name in __all__ is importable, and __all__ is sorted so additions are reviewed."""
    for name in harness.__all__:
        assert getattr(harness, name) is not None, name
    assert list(harness.__all__) == sorted(harness.__all__)


def test_lazy_names_match_all() -> None:
    """The lazily loaded names are exactly the public API (plus the version)."""
    assert set(harness._LAZY) | {"__version__"} == set(harness.__all__)
