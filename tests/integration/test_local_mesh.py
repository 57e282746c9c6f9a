"""The local mesh for real: Envoy sidecars, demo apps, mTLS, from any topology in the format."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
import pytest
from meshtools import cli, mesh_processes

from harness.mesh.local.driver import LocalMesh

pytestmark = pytest.mark.mesh


class TestDemoMesh:
    def test_gateway_answers_with_both_headers(self, demo_mesh: LocalMesh) -> None:
        """A request through the gateway returns 200 with x-harness-version and a full trace."""
        resp = httpx.get(demo_mesh.gateway_url + "/", timeout=5)
        assert resp.status_code == 200
        assert resp.headers["x-harness-version"] == "productpage-v1"
        trace = resp.headers["x-harness-trace"].split(",")
        assert trace[0] == "productpage-v1"
        assert trace[1] == "details-v1"
        assert trace[2] in {"reviews-v1", "reviews-v2", "reviews-v3"}
        assert trace[3] == "ratings-v1"

    def test_every_port_is_loopback_and_admins_answer(self, demo_mesh: LocalMesh) -> None:
        """Every Envoy admin answers on 127.0.0.1 and reports LIVE."""
        for node in demo_mesh.nodes():
            assert node.admin.startswith("http://127.0.0.1:")
            assert httpx.get(node.admin + "/ready", timeout=2).text.strip() == "LIVE"

    def test_explicit_breakers_on_every_outbound_cluster(self, demo_mesh: LocalMesh) -> None:
        """No cluster keeps Envoy's implicit 3-concurrent-retries breaker."""
        node = next(demo_mesh.iter_envoys_of("productpage"))
        dump = httpx.get(node.admin + "/config_dump", params={"resource": "dynamic_active_clusters"}).json()
        clusters = [c["cluster"] for c in dump["configs"]]
        out = [c for c in clusters if c["name"].startswith("out_")]
        assert out
        for cluster in out:
            thresholds = cluster["circuit_breakers"]["thresholds"][0]
            assert thresholds["max_retries"] == 1024

    def test_mtls_strict_refuses_plaintext(self, demo_mesh: LocalMesh) -> None:
        """A plaintext request straight to a sidecar's inbound port never reaches the app."""
        inst = demo_mesh.layout.of("ratings")[0]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{inst.inbound_port}/", timeout=2)

    def test_policy_override_round_trip(self, demo_mesh: LocalMesh) -> None:
        """An override is in force on the edge, and removing it restores the declared policy."""
        assert demo_mesh.policy("productpage", "reviews").retries == 2
        node = next(demo_mesh.iter_envoys_of("productpage"))

        def routes() -> str:
            return httpx.get(node.admin + "/config_dump", params={"resource": "dynamic_route_configs"}).text

        assert '"num_retries": 2' in routes()
        demo_mesh.set_override("productpage", "reviews", {"retries": {"attempts": 0}})
        try:
            assert demo_mesh.policy("productpage", "reviews").retries == 0
            assert '"num_retries": 2' not in routes()
        finally:
            demo_mesh.set_override("productpage", "reviews", None)
        assert demo_mesh.policy("productpage", "reviews").retries == 2


class TestCli:
    def test_up_status_down_leaves_nothing(self, tmp_path: Path) -> None:
        """`up` prints the gateway URL and returns; the mesh serves; `down` leaves no process behind."""
        state = tmp_path / "state"
        up = cli("up", "--env", "environments/local.yaml", state=state)
        assert up.returncode == 0, up.stderr
        url = up.stdout.strip()
        assert url.startswith("http://127.0.0.1:")
        try:
            resp = httpx.get(url + "/", timeout=5)
            assert resp.status_code == 200
            assert "x-harness-trace" in resp.headers
            status = cli("status", "--env", "local", "--json", state=state)
            assert '"running": true' in status.stdout
        finally:
            down = cli("down", "--env", "environments/local.yaml", state=state)
        assert down.returncode == 0, down.stderr
        assert mesh_processes(state) == []
        assert cli("status", "--env", "local", state=state).returncode == 3

    def test_bad_suite_exits_2_without_starting_anything(self, tmp_path: Path) -> None:
        """An invalid suite is refused with FILE:LINE and exit 2, and no process is started."""
        suite = tmp_path / "bad.yaml"
        suite.write_text(textwrap.dedent("""\
            apiVersion: harness/v1
            kind: Suite
            metadata: {name: bad}
            spec:
              environment: local
              experiments:
                - name: x
                  faults:
                    - {kind: http-abort, target: {service: nosuch}, percent: 30}
            """))
        state = tmp_path / "state"
        result = cli("run", str(suite), "--env", "environments/local.yaml", state=state)
        assert result.returncode == 2
        assert f"{suite}:9:" in result.stderr
        assert "nosuch" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        assert mesh_processes(state) == []


class TestSplitOverride:
    def test_split_override_round_trip(self, demo_mesh: LocalMesh) -> None:
        """A split override sends every request to one version; removing it restores the declared split."""
        demo_mesh.set_split("reviews", {"v1": 0, "v2": 100, "v3": 0})
        try:
            with httpx.Client(timeout=5) as client:
                seen = {client.get(demo_mesh.gateway_url + "/").headers["x-harness-trace"].split(",")[2]
                        for _ in range(60)}
            assert seen == {"reviews-v2"}
        finally:
            demo_mesh.set_split("reviews", None)
        with httpx.Client(timeout=5) as client:
            seen = {client.get(demo_mesh.gateway_url + "/").headers["x-harness-trace"].split(",")[2]
                    for _ in range(150)}
        assert seen == {"reviews-v1", "reviews-v2", "reviews-v3"}
