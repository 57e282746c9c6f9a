"""Topologies unlike the demo: replicas, weighted splits, optional calls, policies on inner edges."""

from __future__ import annotations

import collections
from pathlib import Path

import httpx
import pytest
from meshtools import mesh_processes

from harness.mesh.local.driver import LocalMesh
from harness.model.loader import load_environment

pytestmark = pytest.mark.mesh


UNSEEN = """\
apiVersion: harness/v1
kind: Environment
metadata: {name: shop}
spec:
  gateway: {service: frontend}
  services:
    - name: frontend
      versions: {v1: {replicas: 2}}
      calls:
        - {to: recommender, optional: true}
        - {to: cart, retries: {attempts: 3, on: [5xx]}, timeout: 2s}
    - name: recommender
      behaviour: {error_rate: 1.0}
    - name: cart
      versions: {v1: {}, v2: {replicas: 2}}
      split: {v1: 80, v2: 20}
      calls:
        - {to: db, timeout: 500ms, retries: {attempts: 1, per_try_timeout: 200ms}}
    - name: db
      versions: {blue: {}, green: {}}
  mtls: permissive
"""


class TestUnseenTopology:
    def test_replicas_split_optional_calls_and_inner_policies(self, tmp_path: Path) -> None:
        """A topology unlike the demo: replicas, a weighted split, an optional failing call, inner policies."""
        env_file = tmp_path / "shop.yaml"
        env_file.write_text(UNSEEN)
        env = load_environment(env_file)
        mesh = LocalMesh.for_environment(env.model, env.path, tmp_path / "state")
        try:
            mesh.up()
            assert len(mesh.layout.of("frontend")) == 2
            assert len(mesh.layout.of("cart", "v2")) == 2
            versions: collections.Counter[str] = collections.Counter()
            dbs: collections.Counter[str] = collections.Counter()
            with httpx.Client(timeout=5) as client:
                for _ in range(400):
                    resp = client.get(mesh.gateway_url + "/")
                    assert resp.status_code == 200, resp.text
                    trace = resp.headers["x-harness-trace"].split(",")
                    # the optional recommender always fails, so it never appears; cart and db always do
                    assert trace[0] == "frontend-v1"
                    assert not any(t.startswith("recommender") for t in trace)
                    versions[trace[1]] += 1
                    dbs[trace[2]] += 1
            share_v2 = versions["cart-v2"] / 400
            assert 0.12 < share_v2 < 0.28, versions
            assert set(dbs) == {"db-blue", "db-green"}
            frontend = next(mesh.iter_envoys_of("frontend"))
            dump = httpx.get(frontend.admin + "/config_dump", params={"resource": "dynamic_listeners"}).text
            assert '"num_retries": 3' in dump
            cart = next(mesh.iter_envoys_of("cart"))
            dump = httpx.get(cart.admin + "/config_dump", params={"resource": "dynamic_listeners"}).text
            assert '"per_try_timeout": "0.200s"' in dump
            assert '"timeout": "0.500s"' in dump
            # permissive: a plaintext request to a sidecar's inbound port is served
            db = mesh.layout.of("db")[0]
            assert httpx.get(f"http://127.0.0.1:{db.inbound_port}/", timeout=2).status_code == 200
        finally:
            mesh.down()
            mesh.close()
        assert mesh_processes(tmp_path / "state") == []
