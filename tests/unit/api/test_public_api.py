"""The public surface is exactly what harness/__init__.py declares."""

from __future__ import annotations

import harness


def test_all_names_exist_and_are_sorted() -> None:
    """Every name in __all__ is importable, and __all__ is sorted so additions are reviewed."""
    for name in harness.__all__:
        assert hasattr(harness, name), name
    assert list(harness.__all__) == sorted(harness.__all__)


def test_no_undeclared_public_names() -> None:
    """Public attributes of the package are either declared or submodules."""
    import types

    public = {n for n in dir(harness) if not n.startswith("_")}
    modules = {n for n in public if isinstance(getattr(harness, n), types.ModuleType)}
    assert public - modules == set(harness.__all__) - {"__version__"}
