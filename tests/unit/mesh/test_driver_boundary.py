"""Outside the drivers nothing imports a driver: the runner, faults, plan, cleanup, metrics and the
benchmarks reach any mesh through the driver interface (harness.mesh.base), and the one place that picks a
driver from ``mesh:`` (harness/mesh/__init__.py) names it as text, importing it on use.

The compose, istio and consul drivers are the exceptions, on purpose: compose is the local mesh's renderer
and changes with another process manager (containers); istio's and consul's local control planes run the
local mesh's processes (apps, Envoys, state, signals) with istiod or a Consul agent configuring them. They
build on harness.mesh.local; nothing else may import any of them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LOCAL = "harness.mesh.local"
DRIVER_PACKAGES = ("harness.mesh.local", "harness.mesh.compose", "harness.mesh.istio", "harness.mesh.consul")


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return out


DRIVER_DIRS = ("local", "compose", "istio", "consul")
FILES = sorted(p for root in ("harness", "bench") for p in (REPO / root).rglob("*.py")
               if not any(p.is_relative_to(REPO / "harness" / "mesh" / d) for d in DRIVER_DIRS))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_import_of_a_driver(path: Path) -> None:
    """This module imports no part of harness.mesh.local, harness.mesh.compose, harness.mesh.istio or
    harness.mesh.consul."""
    bad = [f"{path.relative_to(REPO)}:{line}: {name}" for line, name in _imports(path)
           if any(name == pkg or name.startswith(pkg + ".") for pkg in DRIVER_PACKAGES)]
    assert not bad, "use the driver interface (harness.mesh.open_driver / MeshDriver) instead:\n" + "\n".join(bad)


def test_the_check_sees_imports() -> None:
    """The check is not vacuous: it finds the imports a local-mesh module does make."""
    found = _imports(REPO / "harness" / "mesh" / "local" / "driver.py")
    assert any(name.startswith(LOCAL) for _, name in found)
