"""pyproject.toml declares exactly the third-party packages harness/ imports: no more, no fewer.

An undeclared import works on a developer's machine by accident (gevent came with locust, yarl with
aiohttp) and breaks when the other package changes; a declared package nothing imports is weight every
user installs. Packages of features still to come live in extras until their feature lands.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PROVIDED_BY = {
    "pydantic-core": "pydantic",  # pydantic pins its own core exactly; declaring it too could only conflict
    "allure-python-commons": "allure-pytest",  # `import allure`; allure-pytest (the --alluredir plugin) pins it
}
"""Imported distributions that a declared one provides at the exact version it needs."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_distributions() -> dict[str, set[str]]:
    """Distribution name -> the harness modules that import it (third-party top-level imports only)."""
    dists = packages_distributions()
    found: dict[str, set[str]] = {}
    for path in (REPO / "harness").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("harness", "__future__"):
                    continue
                for provided in dists.get(top, [top]):
                    dist = PROVIDED_BY.get(_canonical(provided), _canonical(provided))
                    found.setdefault(dist, set()).add(str(path.relative_to(REPO)))
    return found


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {_canonical(re.split(r"[ ;<>=!~\[]", dep, maxsplit=1)[0]) for dep in project["dependencies"]}


def test_every_import_is_declared() -> None:
    """Each third-party package harness/ imports is a main dependency."""
    missing = {dist: sorted(where) for dist, where in imported_distributions().items() if dist not in declared()}
    assert not missing, f"imported but not declared in [project.dependencies]: {missing}"


def test_every_dependency_is_imported() -> None:
    """Each main dependency is imported by harness/ (else it belongs in an extra, or nowhere)."""
    unused = declared() - set(imported_distributions())
    assert not unused, f"declared but never imported by harness/: {sorted(unused)}; move them to an extra"
