"""The local CA's rotation seen by a real Envoy.

The whole point of the ``..data`` layout is that Envoy's file-based SDS picks up a rotation atomically;
only a real Envoy can show that the layout, permissions and paths we produce are the ones it reloads.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import ssl
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from meshtools import envoy_path

from harness.mesh.local.ca import LocalCA, serial_hex

__all__: list[str] = []

ENVOY = envoy_path()



def mode(path: Path) -> int:
    """Permission bits of ``path`` (following symlinks, as Envoy would when opening it)."""
    return stat.S_IMODE(os.stat(path).st_mode)


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Load a published key to prove it pairs with the published certificate."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


# ---------------------------------------------------------------------------------------
# End to end with a real Envoy
# ---------------------------------------------------------------------------------------


def _sds_config(path: Path) -> dict[str, Any]:
    """A file-based SDS config source that reloads when the secret file is renamed in."""
    return {"resource_api_version": "V3",
            "path_config_source": {"path": str(path), "watched_directory": {"path": str(path.parent)}}}


def _write_sds_files(sds_dir: Path, ca: LocalCA, service: str) -> tuple[Path, Path]:
    """Write the two SDS Secret files (server cert, trusted CA) pointing at the CA's stable paths."""
    sds_dir.mkdir(mode=0o700)
    leaf = ca.paths(service)
    trust = ca.trust_paths()
    server_cert = sds_dir / "server_cert.yaml"
    trusted_ca = sds_dir / "trusted_ca.yaml"
    secret = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
    # JSON is valid YAML; Envoy picks the parser by extension.
    server_cert.write_text(json.dumps({"version_info": "1", "resources": [{
        "@type": secret, "name": "server_cert",
        "tls_certificate": {"certificate_chain": {"filename": str(leaf.cert)},
                            "private_key": {"filename": str(leaf.key)},
                            "watched_directory": {"path": str(leaf.watched_directory)}}}]}))
    trusted_ca.write_text(json.dumps({"version_info": "1", "resources": [{
        "@type": secret, "name": "trusted_ca",
        "validation_context": {"trusted_ca": {"filename": str(trust.ca_cert)},
                               "watched_directory": {"path": str(trust.watched_directory)}}}]}))
    return server_cert, trusted_ca


def _bootstrap(
    server_cert_sds: Path, trusted_ca_sds: Path, app_port: int, client_spiffe: str
) -> dict[str, Any]:
    """Static bootstrap: one mTLS listener (client cert required, SAN-matched) in front of the app."""
    router = {"name": "envoy.filters.http.router",
              "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                 ".HttpConnectionManager",
        "stat_prefix": "mtls_in",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{
            "match": {"prefix": "/"}, "route": {"cluster": "app"},
            "response_headers_to_add": [{"header": {"key": "x-client-spiffe",
                                                    "value": "%DOWNSTREAM_PEER_URI_SAN%"}}]}]}]},
        "http_filters": [router],
    }
    tls = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "require_client_certificate": True,
        "common_tls_context": {
            "tls_certificate_sds_secret_configs": [{"name": "server_cert",
                                                    "sds_config": _sds_config(server_cert_sds)}],
            "combined_validation_context": {
                "default_validation_context": {"match_typed_subject_alt_names": [
                    {"san_type": "URI", "matcher": {"exact": client_spiffe}}]},
                "validation_context_sds_secret_config": {"name": "trusted_ca",
                                                         "sds_config": _sds_config(trusted_ca_sds)},
            },
        },
    }
    return {
        "node": {"id": "backend-sidecar", "cluster": "backend"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "mtls_in",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{
                    "filters": [{"name": "envoy.filters.network.http_connection_manager",
                                 "typed_config": hcm}],
                    "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls},
                }],
            }],
            "clusters": [{
                "name": "app", "connect_timeout": "1s", "type": "STATIC",
                "load_assignment": {"cluster_name": "app", "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": app_port}}}}]}]},
            }],
        },
    }


def _client_ctx(ca: LocalCA, cert: Path, key: Path) -> ssl.SSLContext:
    """Client TLS context presenting ``cert``/``key`` and trusting the CA's published bundle."""
    ctx = ssl.create_default_context(cafile=str(ca.trust_paths().ca_cert))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def _served_serial(url: str, ctx: ssl.SSLContext) -> tuple[int, str, str]:
    """One request on a fresh connection: status, spiffe header echoed, and the served cert serial."""
    async with httpx.AsyncClient(verify=ctx, timeout=5) as client, client.stream(
        "GET", url, extensions={"sni_hostname": "backend.default.svc"}
    ) as resp:
        await resp.aread()
        ssl_object = resp.extensions["network_stream"].get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True)
        served = serial_hex(x509.load_der_x509_certificate(der))
        return resp.status_code, resp.headers.get("x-client-spiffe", ""), served


async def _admin_json(admin: str, path: str) -> Any:
    """GET a JSON admin endpoint of the Envoy under test."""
    async with httpx.AsyncClient(timeout=5) as client:
        r = await client.get(admin + path)
        r.raise_for_status()
        return r.json()


def _cert_serials(certs: Any) -> set[str]:
    """All serial numbers Envoy reports in ``/certs`` (our server cert is the only chain)."""
    return {c.get("serial_number", "") for entry in certs.get("certificates", [])
            for c in entry.get("cert_chain", [])}


@pytest.mark.skipif(ENVOY is None, reason="envoy binary not on PATH")
def test_envoy_mtls_and_rotation_end_to_end(tmp_path: Path) -> None:
    """Real Envoy: mTLS works with our files, rogue client is refused, rotation is picked up."""
    ca = LocalCA.create(tmp_path / "pki")
    rogue = LocalCA.create_rogue(tmp_path / "rogue")
    server = ca.issue_leaf("backend")
    client = ca.issue_leaf("frontend")
    rogue_client = rogue.issue_leaf("frontend")
    server_sds, trusted_sds = _write_sds_files(tmp_path / "sds", ca, "backend")
    timings: dict[str, float] = {}

    async def scenario() -> None:
        """Run app, Envoy and clients on one event loop; Envoy is always terminated by PID."""
        async def hello(request: web.Request) -> web.Response:
            """The tiny upstream app behind the sidecar."""
            return web.Response(text="hello")

        app = web.Application()
        app.router.add_get("/{tail:.*}", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        app_port = runner.addresses[0][1]
        bootstrap = tmp_path / "bootstrap.json"
        config = _bootstrap(server_sds, trusted_sds, app_port, ca.spiffe_id("frontend"))
        bootstrap.write_text(json.dumps(config))
        admin_path = tmp_path / "admin.txt"
        assert ENVOY is not None
        log = (tmp_path / "envoy.log").open("wb")
        proc = subprocess.Popen(
            [ENVOY, "-c", str(bootstrap), "--base-id", str(random.randint(1000, 60000)), "--concurrency", "1",
             "--disable-hot-restart", "-l", "warning", "--admin-address-path", str(admin_path)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            admin = await _wait_ready(proc, admin_path, tmp_path / "envoy.log")
            listeners = await _admin_json(admin, "/listeners?format=json")
            port = listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
            url = f"https://127.0.0.1:{port}/hello"

            client_ctx = _client_ctx(ca, client.cert_path, client.key_path)
            status, spiffe, served = await _served_serial(url, client_ctx)
            assert (status, spiffe, served) == (200, ca.spiffe_id("frontend"), server.serial_hex)
            assert server.serial_hex in _cert_serials(await _admin_json(admin, "/certs"))

            # A client certificate from the rogue CA must be refused by the sidecar. With TLS 1.3
            # the refusal (alert "unknown ca") arrives after the client's handshake, so depending
            # on timing httpx raises a transport error or lets the raw ssl.SSLError through.
            rogue_ctx = _client_ctx(ca, rogue_client.cert_path, rogue_client.key_path)
            with pytest.raises((httpx.TransportError, ssl.SSLError)):
                await _served_serial(url, rogue_ctx)
            stats = await _admin_json(admin, "/stats?format=json&filter=ssl.fail_verify_error")
            assert any(s["name"].startswith("listener.") and s["value"] >= 1 for s in stats["stats"]), stats

            # Rotate the server leaf twice (the second rotation also deletes ..v1 in the watched
            # directory): one rename each; Envoy must serve the new serial by itself.
            previous = server
            for round_no in (1, 2):
                t0 = time.perf_counter()
                rotated = ca.issue_leaf("backend")
                while True:
                    serials = _cert_serials(await _admin_json(admin, "/certs"))
                    if rotated.serial_hex in serials and previous.serial_hex not in serials:
                        break
                    assert time.perf_counter() - t0 < 5.0, f"rotation not picked up: {serials}"
                    await asyncio.sleep(0.02)
                timings[f"rotation_{round_no}_s"] = time.perf_counter() - t0
                status, _, served = await _served_serial(url, client_ctx)
                assert (status, served) == (200, rotated.serial_hex)
                previous = rotated
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
            await runner.cleanup()

    asyncio.run(scenario())
    print("envoy picked up rotated leaves in", {k: f"{v * 1000:.0f} ms" for k, v in timings.items()})
    assert max(timings.values()) < 2.5


async def _wait_ready(proc: subprocess.Popen[bytes], admin_path: Path, log: Path) -> str:
    """Wait for the admin address file and ``/ready`` == LIVE; fail with Envoy's log otherwise."""
    deadline = time.monotonic() + 15
    admin = ""
    async with httpx.AsyncClient(timeout=1) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"envoy exited rc={proc.returncode}: {log.read_text()[-3000:]}")
            if not admin and admin_path.exists() and admin_path.read_text().strip():
                admin = "http://" + admin_path.read_text().strip()
            if admin:
                try:
                    r = await client.get(admin + "/ready")
                    if r.status_code == 200:
                        return admin
                except httpx.TransportError:
                    pass
            await asyncio.sleep(0.02)
    raise AssertionError(f"envoy not ready in time: {log.read_text()[-3000:]}")
