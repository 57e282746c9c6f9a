"""Tests for the local CA: certificate content, on-disk layout, and rotation seen by a real Envoy.

Why an Envoy end-to-end test in a unit suite: the whole point of the ``..data`` layout is
that Envoy's file-based SDS picks up a rotation atomically; only a real Envoy can show that
the layout, permissions and paths we produce are the ones it actually reloads from.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import shutil
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
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from harness.mesh.local.ca import DATA_LINK, LocalCA, serial_hex

__all__: list[str] = []

ENVOY = shutil.which("envoy")


def mode(path: Path) -> int:
    """Permission bits of ``path`` (following symlinks, as Envoy would when opening it)."""
    return stat.S_IMODE(os.stat(path).st_mode)


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Load a published key to prove it pairs with the published certificate."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def test_leaf_chain_san_and_eku(tmp_path: Path) -> None:
    """A leaf must validate as both TLS server and client under the root, with the SPIFFE SAN."""
    ca = LocalCA.create(tmp_path / "pki", trust_domain="example.test")
    info = ca.issue_leaf("reviews")
    leaf = ca.current_leaf("reviews")
    root = ca.root_cert

    leaf.verify_directly_issued_by(root)
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
    public_key = leaf.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"

    store = Store([root])
    client_chain = PolicyBuilder().store(store).build_client_verifier().verify(leaf, [])
    assert client_chain.chain[-1] == root
    server_verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName("reviews.default.svc"))
    assert server_verifier.verify(leaf, [])[-1] == root

    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://example.test/ns/default/sa/reviews"
    ]
    assert info.spiffe_id == ca.spiffe_id("reviews") == "spiffe://example.test/ns/default/sa/reviews"
    assert sorted(san.get_values_for_type(x509.DNSName)) == ["reviews", "reviews.default.svc"]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False

    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime == dt.timedelta(hours=24, minutes=5)
    assert leaf.not_valid_before_utc < dt.datetime.now(dt.UTC) - dt.timedelta(minutes=4)
    assert info.not_after == leaf.not_valid_after_utc
    assert info.serial_hex == serial_hex(leaf) == format(leaf.serial_number, "x")

    root_bc = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert root_bc.ca is True
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    assert root.not_valid_after_utc - root.not_valid_before_utc >= dt.timedelta(days=3650)
    # The published key is the one the certificate was issued for.
    key = load_key(info.key_path)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*spki) == leaf.public_key().public_bytes(*spki)


def test_permissions_and_no_key_material_exposed(tmp_path: Path) -> None:
    """Keys 0600, dirs 0700, and nothing returned or repr-ed carries key material."""
    ca = LocalCA.create(tmp_path / "pki")
    info = ca.issue_leaf("ratings")
    assert mode(ca.directory / "ca" / "root.key") == 0o600
    assert mode(info.key_path) == 0o600  # follows the symlink to ..vN/tls.key
    for directory in (ca.directory, ca.directory / "ca", ca.directory / "trust", ca.directory / "leaf",
                      info.directory, info.directory / "..v1"):
        assert mode(directory) == 0o700, directory
    assert "PRIVATE" not in repr(info)
    assert "PRIVATE" not in repr(ca)
    assert not any(p.name.startswith(".") and ".tmp-" in p.name for p in ca.directory.rglob("*"))


def test_rotation_changes_serial_behind_stable_paths(tmp_path: Path) -> None:
    """Rotation is a ..data swap: new serial, same paths Envoy was configured with."""
    ca = LocalCA.create(tmp_path / "pki")
    paths = ca.paths("details")
    assert paths.cert == tmp_path / "pki" / "leaf" / "details" / "tls.crt"
    assert paths.key == paths.watched_directory / "tls.key"
    first = ca.issue_leaf("details")
    d = paths.watched_directory
    assert os.readlink(d / "tls.crt") == f"{DATA_LINK}/tls.crt"
    assert os.readlink(d / "tls.key") == f"{DATA_LINK}/tls.key"
    assert os.readlink(d / DATA_LINK) == "..v1"
    assert first.version == 1

    second = ca.issue_leaf("details")
    assert second.serial_hex != first.serial_hex
    assert (second.cert_path, second.key_path, second.directory) == (first.cert_path, first.key_path, d)
    assert os.readlink(d / DATA_LINK) == "..v2"
    assert os.readlink(d / "tls.crt") == f"{DATA_LINK}/tls.crt"
    assert first.cert_path.resolve() == (d / "..v2" / "tls.crt").resolve()
    assert serial_hex(ca.current_leaf("details")) == second.serial_hex
    assert not (d / "..data_tmp").exists()

    third = ca.issue_leaf("details")
    assert third.version == 3
    assert sorted(p.name for p in d.iterdir()) == ["..data", "..v2", "..v3", "tls.crt", "tls.key"]


def test_rogue_ca_leaf_does_not_verify_against_real_root(tmp_path: Path) -> None:
    """The cert-untrusted fault only works if rogue leaves are rejected by the real root."""
    ca = LocalCA.create(tmp_path / "pki")
    rogue = LocalCA.create_rogue(tmp_path / "rogue")
    assert rogue.is_rogue
    assert not ca.is_rogue
    assert rogue.root_cert.subject != ca.root_cert.subject
    bad = rogue.issue_leaf("frontend")
    leaf = rogue.current_leaf("frontend")
    assert bad.spiffe_id == ca.spiffe_id("frontend"), "same identity, only the signer is wrong"
    with pytest.raises(VerificationError):
        PolicyBuilder().store(Store([ca.root_cert])).build_client_verifier().verify(leaf, [])
    with pytest.raises((ValueError, InvalidSignature)):
        leaf.verify_directly_issued_by(ca.root_cert)
    # ...while it does verify against its own root, so it is otherwise a well-formed leaf.
    PolicyBuilder().store(Store([rogue.root_cert])).build_client_verifier().verify(leaf, [])


def test_create_is_idempotent_and_load_checks(tmp_path: Path) -> None:
    """Re-running the harness must reuse the root that running sidecars already trust."""
    with pytest.raises(FileNotFoundError):
        LocalCA.load(tmp_path / "nothing")
    ca = LocalCA.create(tmp_path / "pki")
    again = LocalCA.create(tmp_path / "pki")
    loaded = LocalCA.load(tmp_path / "pki")
    assert again.root_cert == ca.root_cert == loaded.root_cert
    assert loaded.trust_domain == "harness.local"
    with pytest.raises(ValueError, match="already holds a CA"):
        LocalCA.create(tmp_path / "pki", trust_domain="other.local")
    with pytest.raises(ValueError, match="already holds a CA"):
        LocalCA.create_rogue(tmp_path / "pki")
    for bad in ("../etc", "Upper", "a/b", "", "-x"):
        with pytest.raises(ValueError, match="DNS label"):
            ca.issue_leaf(bad)


def test_trust_bundle_overlap_is_published_by_rename(tmp_path: Path) -> None:
    """CA rotation needs an old+new overlap bundle published atomically."""
    ca = LocalCA.create(tmp_path / "pki")
    new_root = LocalCA.create(tmp_path / "pki2")
    trust = ca.trust_paths()
    assert trust.ca_cert == tmp_path / "pki" / "trust" / "ca.crt"
    assert trust.watched_directory == tmp_path / "pki" / "trust"
    assert x509.load_pem_x509_certificates(trust.ca_cert.read_bytes()) == [ca.root_cert]
    assert ca.publish_trust_bundle([new_root.root_cert, ca.root_cert]) == 2
    assert x509.load_pem_x509_certificates(trust.ca_cert.read_bytes()) == [ca.root_cert, new_root.root_cert]
    assert os.readlink(trust.watched_directory / DATA_LINK) == "..v2"
    assert os.readlink(trust.ca_cert) == f"{DATA_LINK}/ca.crt"


def test_serial_hex_matches_boringssl_bn2hex() -> None:
    """Serials are compared with Envoy's /certs output, so the formatting must match."""
    assert serial_hex(0x0AFF) == "0aff"
    assert serial_hex(0x1234) == "1234"
    assert serial_hex(0xABC) == "0abc"
    assert serial_hex(0) == "0"


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
