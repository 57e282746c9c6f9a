"""Mesh drivers: one interface (:mod:`harness.mesh.base`), one implementation per ``mesh:``.

This is the one place that picks a driver from an environment's ``mesh:``; nothing else in the harness
imports a driver's package (tests/unit/mesh/test_driver_boundary.py keeps it so). Drivers load on first
use, so a command that only reads documents never imports Envoy tooling.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # at run time nothing heavy: every demo service imports this package on start-up
    from harness.mesh.base import Capabilities, MeshDriver
    from harness.model.environment import EdgePolicy, Environment
    from harness.model.suite import PolicyChange

__all__ = ["DRIVERS", "build_compose_images", "capabilities_of", "environment_refusals", "open_driver",
           "override_refusals", "policy_refusals", "write_compose_project"]

DRIVERS: dict[str, str | type[MeshDriver]] = {"local": "harness.mesh.local.driver:LocalMesh",
                                              "compose": "harness.mesh.compose.driver:ComposeMesh",
                                              "istio": "harness.mesh.istio.driver:IstioMesh",
                                              "linkerd": "harness.mesh.linkerd.driver:LinkerdMesh",
                                              "consul": "harness.mesh.consul.driver:ConsulMesh"}
"""``mesh:`` value -> the driver class, as ``module:Class`` (imported on first use), or the class itself
(``harness.testing.registered_driver`` puts test drivers here)."""


def _driver_class(mesh: str) -> type[MeshDriver] | None:
    target = DRIVERS.get(mesh)
    if target is None or isinstance(target, type):
        return target
    module, _, name = target.partition(":")
    cls: type[MeshDriver] = getattr(importlib.import_module(module), name)
    return cls


def capabilities_of(mesh: str, env: Environment | None = None) -> Capabilities | None:
    """What the driver for ``mesh`` can do (for ``env``, where what it can do depends on the environment: a
    driver's ``capabilities_for``); None when this version has no driver for it."""
    cls = _driver_class(mesh)
    if cls is None:
        return None
    for_env: Callable[[Environment], Capabilities] | None = getattr(cls, "capabilities_for", None)
    return for_env(env) if env is not None and for_env is not None else cls.capabilities


def environment_refusals(mesh: str) -> Callable[[Environment], list[tuple[tuple[str | int, ...], str]]] | None:
    """What the driver for ``mesh`` says it cannot do with an environment as a whole (its
    ``refused_environment``: each problem's path under ``spec`` and what to write instead); None when it takes
    every environment its schema does."""
    cls = _driver_class(mesh)
    found: Callable[[Environment], list[tuple[tuple[str | int, ...], str]]] | None = getattr(
        cls, "refused_environment", None)
    return found


def policy_refusals(mesh: str) -> Callable[[EdgePolicy], list[tuple[tuple[str, ...], str]]] | None:
    """What the driver for ``mesh`` says it cannot hold of an edge's policy, field by field (its
    ``refused_policy``); None when it holds every field it declares."""
    cls = _driver_class(mesh)
    found: Callable[[EdgePolicy], list[tuple[tuple[str, ...], str]]] | None = getattr(cls, "refused_policy", None)
    return found


def override_refusals(mesh: str) -> Callable[[list[PolicyChange]], list[tuple[int, tuple[str, ...], str]]] | None:
    """What the driver for ``mesh`` says it cannot do with an experiment's policy overrides together (its
    ``refused_overrides``: each problem as the override's index, its field and why); None when it takes any."""
    cls = _driver_class(mesh)
    found: Callable[[list[PolicyChange]], list[tuple[int, tuple[str, ...], str]]] | None = getattr(
        cls, "refused_overrides", None)
    return found


def build_compose_images(on_event: Callable[[str], None] | None = None) -> dict[str, str]:
    """``mesh-harness compose-images``: build the compose mesh's images here; their tags by kind."""
    engine = importlib.import_module("harness.mesh.compose.engine")
    images = importlib.import_module("harness.mesh.compose.images")
    client = engine.engine()
    try:
        built: dict[str, str] = images.build_images(client, on_event=on_event).to_json()
        return built
    finally:
        client.close()


def write_compose_project(env: Environment, env_path: Path, label: str, out_dir: Path) -> Path:
    """``mesh-harness compose-file``: an environment's compose project, to run without the harness."""
    export = importlib.import_module("harness.mesh.compose.export")
    written: Path = export.write_project(env, env_path, label, out_dir)
    return written


def open_driver(env: Environment, env_path: Path, state_dir: Path | None = None) -> MeshDriver:
    """The driver for ``env.spec.mesh``, bound to the environment (nothing is started or contacted).

    ``state_dir`` defaults to one directory per environment file under the state root, so that ``up``
    and a later ``run`` or ``cleanup`` find the same mesh.
    """
    from harness._errors import InputError

    cls = _driver_class(env.spec.mesh)
    if cls is None:
        raise InputError.at(env_path, f"mesh '{env.spec.mesh}' has no driver in this version; drivers: "
                                      f"{', '.join(sorted(DRIVERS))}", path="spec.mesh")
    return cls.for_environment(env, env_path, state_dir)
