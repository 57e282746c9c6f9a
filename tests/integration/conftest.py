"""Shared fixtures for integration tests: real Envoy meshes in private state directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubeapi import KubeAPI, binaries_or_skip
from meshtools import DEMO_ENV

from harness.mesh.local.driver import LocalMesh
from harness.model.environment import Environment
from harness.model.loader import Loaded, load_environment


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder starts real processes (Envoy, demo apps, Locust): mark it ``mesh`` so
    that ``-m "not mesh"`` selects exactly the unit tests, which start none."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.mesh)


@pytest.fixture(scope="session")
def demo_env() -> Loaded[Environment]:
    return load_environment(DEMO_ENV)


@pytest.fixture(scope="module")
def demo_mesh(tmp_path_factory: pytest.TempPathFactory, demo_env: Loaded[Environment]) -> Iterator[LocalMesh]:
    """The bundled demo mesh, up for one test module in a private state directory.

    Module scope, not session: a machine's default 128 inotify instances hold about 18 Envoys, so
    meshes of different modules must not overlap.
    """
    state = tmp_path_factory.mktemp("demo-state")
    mesh = LocalMesh.for_environment(demo_env.model, demo_env.path, state)
    mesh.up()
    try:
        yield mesh
    finally:
        mesh.down()
        mesh.close()



COMPOSE_ENV = Path(__file__).resolve().parents[2] / "environments" / "compose.yaml"


def _compose_or_skip() -> None:
    """The Docker engine answers, compose v2 is found, and the local images are built (cached by tag).

    Skipped where there is no engine, except in CI (``MESH_HARNESS_CI=1``), which starts one: there a
    missing engine is a failure.
    """
    import os

    from harness._errors import MeshError
    from harness.mesh.compose.engine import compose_command, engine
    from harness.mesh.compose.images import build_images

    try:
        client = engine()
        compose_command()
    except MeshError as exc:
        if os.environ.get("MESH_HARNESS_CI"):
            raise
        pytest.skip(f"no Docker engine here: {exc}")
    build_images(client)
    client.close()


@pytest.fixture(scope="session")
def compose_env() -> Loaded[Environment]:
    """The bundled demo as a compose mesh, with its images built."""
    _compose_or_skip()
    return load_environment(COMPOSE_ENV)


ISTIO_ENV = Path(__file__).resolve().parents[2] / "environments" / "istio-local.yaml"


def istiod_or_skip() -> None:
    """A pilot-discovery is found (``mesh-harness install istiod`` built it); skipped where there is none,
    except in CI (``MESH_HARNESS_CI=1``), which builds it: there a missing istiod is a failure."""
    import os

    from harness._errors import MeshError
    from harness.mesh.istio.istiod import find_istiod

    try:
        find_istiod()
    except MeshError as exc:
        if os.environ.get("MESH_HARNESS_CI"):
            raise
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def istio_env() -> Loaded[Environment]:
    """The Bookinfo-like demo on the local istiod (environments/istio-local.yaml)."""
    istiod_or_skip()
    return load_environment(ISTIO_ENV)


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    """A real kube-apiserver on etcd, both on 127.0.0.1 (tests/integration/kubeapi.py), up for one test module;
    its kubeconfig is ``kube_api.kubeconfig``. Skipped where ``mesh-harness install etcd`` / ``kube-apiserver``
    have not been run, except in CI (``MESH_HARNESS_CI=1``): there a missing binary is a failure."""
    etcd, apiserver = binaries_or_skip()
    with KubeAPI(tmp_path_factory.mktemp("kube-api"), etcd=etcd, apiserver=apiserver) as api:
        yield api


CONSUL_ENV = Path(__file__).resolve().parents[2] / "environments" / "consul-local.yaml"


def consul_or_skip() -> str:
    """The consul binary the consul driver would run (``mesh-harness install consul`` built it); skipped where
    there is none, except in CI (``MESH_HARNESS_CI=1``), which builds it: there a missing consul is a failure."""
    import os

    from harness.mesh.consul.agent import ConsulMissing, find_consul

    try:
        return find_consul()
    except ConsulMissing as exc:
        if os.environ.get("MESH_HARNESS_CI"):
            raise
        pytest.skip(f"no consul binary for mesh: consul: {exc}")


@pytest.fixture(scope="session")
def consul_env() -> Loaded[Environment]:
    """The Bookinfo-like demo on a local Consul agent (environments/consul-local.yaml)."""
    consul_or_skip()
    return load_environment(CONSUL_ENV)
