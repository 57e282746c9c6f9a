"""The local mesh's xDS server: what it serves from an Envoy's documents, and that a rename is pushed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from harness.mesh.local import envoy_config as ec
from harness.mesh.local import xds_server as xs

ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def _route(name: str, version: int, cluster: str = "a") -> dict[str, Any]:
    return {"version_info": str(version), "resources": [{
        "@type": ROUTE, "name": name,
        "virtual_hosts": [{"name": "all", "domains": ["*"],
                           "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]}]}


@pytest.fixture
def envoy_dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    xds, sds, certs = tmp_path / "xds", tmp_path / "sds", tmp_path / "certs"
    for d in (xds, sds, certs):
        d.mkdir()
    (certs / "cert.pem").write_text("CERT-1")
    (certs / "key.pem").write_text("KEY-1")
    (certs / "ca.pem").write_text("ROOTS-1")
    for name, doc in ec.secret_files(certs / "cert.pem", certs / "key.pem", certs / "ca.pem").items():
        _write(sds / name, doc)
    _write(xds / "rds_a.json", _route("a", 3))
    _write(xds / "rds_b.json", _route("b", 3))
    return xds, sds, certs


def test_secrets_are_inlined_and_their_version_follows_the_files(envoy_dirs: tuple[Path, Path, Path]) -> None:
    xds, sds, certs = envoy_dirs
    docs = xs.Documents([xds, sds])
    first = docs.response(xs.SECRET, ["leaf", "trust"])
    assert first is not None
    assert len(first.resources) == 2
    leaf = secret_pb2.Secret()
    first.resources[0].Unpack(leaf)
    assert leaf.tls_certificate.certificate_chain.inline_bytes == b"CERT-1"
    assert not leaf.tls_certificate.HasField("watched_directory")
    (certs / "cert.pem").write_text("CERT-2")  # a rotation: the document itself is unchanged
    docs.invalidate(certs)
    second = docs.response(xs.SECRET, ["leaf"])
    assert second is not None
    assert second.version_info != first.version_info
    assert len(second.resources) == 1


def test_a_certificate_and_its_key_come_from_one_version_of_the_data_link(tmp_path: Path) -> None:
    leaf = tmp_path / "leaf"
    for version, text in (("..v1", "1"), ("..v2", "2")):
        (leaf / version).mkdir(parents=True)
        (leaf / version / "tls.crt").write_text(f"CERT-{text}")
        (leaf / version / "tls.key").write_text(f"KEY-{text}")
    os.symlink("..v1", leaf / "..data")
    for name in ("tls.crt", "tls.key"):
        os.symlink(f"..data/{name}", leaf / name)
    sds = tmp_path / "sds"
    sds.mkdir()
    for name, doc in ec.secret_files(leaf / "tls.crt", leaf / "tls.key", leaf / "tls.crt").items():
        _write(sds / name, doc)
    docs = xs.Documents([sds])

    def served() -> tuple[bytes, bytes]:
        response = docs.response(xs.SECRET, ["leaf"])
        assert response is not None
        secret = secret_pb2.Secret()
        response.resources[0].Unpack(secret)
        return secret.tls_certificate.certificate_chain.inline_bytes, secret.tls_certificate.private_key.inline_bytes

    assert served() == (b"CERT-1", b"KEY-1")
    os.symlink("..v2", leaf / "..data_tmp")
    os.replace(leaf / "..data_tmp", leaf / "..data")  # the rotation: one rename
    docs.invalidate(leaf)
    assert served() == (b"CERT-2", b"KEY-2")


def test_routes_are_held_back_while_their_documents_disagree(envoy_dirs: tuple[Path, Path, Path]) -> None:
    xds, sds, _ = envoy_dirs
    docs = xs.Documents([xds, sds])
    both = docs.response(ROUTE, ["a", "b"])
    assert both is not None
    assert both.version_info == "3"
    assert len(both.resources) == 2
    _write(xds / "rds_a.json", _route("a", 4, cluster="x"))
    docs.invalidate(xds, "rds_a.json")
    assert docs.response(ROUTE, ["a", "b"]) is None  # a at 4, b still at 3: midway through a rewrite
    _write(xds / "rds_b.json", _route("b", 4))
    docs.invalidate(xds, "rds_b.json")
    after = docs.response(ROUTE, ["a"])
    assert after is not None
    assert after.version_info == "4"
    assert len(after.resources) == 1
    config = route_pb2.RouteConfiguration()
    after.resources[0].Unpack(config)
    assert config.virtual_hosts[0].routes[0].route.cluster == "x"


def test_a_document_that_cannot_be_read_holds_everything_back(envoy_dirs: tuple[Path, Path, Path]) -> None:
    xds, sds, _ = envoy_dirs
    _write(xds / "lds.json", {"version_info": "1", "resources": [{"@type": xs.LISTENER, "name": "l"}]})
    docs = xs.Documents([xds, sds])
    assert docs.response(xs.LISTENER, []) is not None
    (xds / "lds.json").write_text("{not json")  # an empty answer would delete the Envoy's listeners
    docs.invalidate(xds, "lds.json")
    assert docs.response(xs.LISTENER, []) is None
    assert docs.response(ROUTE, ["a"]) is None


def test_only_the_documents_asked_for_must_agree(envoy_dirs: tuple[Path, Path, Path]) -> None:
    xds, sds, _ = envoy_dirs
    _write(xds / "rds_gone.json", _route("gone", 9))  # say, an earlier mesh's route nobody asks for
    docs = xs.Documents([xds, sds])
    routes = docs.response(ROUTE, ["a", "b"])
    assert routes is not None
    assert routes.version_info == "3"
    assert docs.response(ROUTE, []) is None  # no name: an unsubscription, nothing to send


def test_file_sources_become_ads_and_the_bootstrap_names_the_server(tmp_path: Path) -> None:
    boot = ec.bootstrap("n", "svc", 9901, tmp_path / "xds", ads_socket=tmp_path / "xds.sock")
    assert "path_config_source" not in json.dumps(boot)
    assert boot["dynamic_resources"]["cds_config"] == xs_ads()
    assert boot["layered_runtime"]["layers"][1]["rtds_layer"]["rtds_config"] == xs_ads()
    assert boot["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0][
        "endpoint"]["address"]["pipe"]["path"] == str(tmp_path / "xds.sock")
    files = ec.bootstrap("n", "svc", 9901, tmp_path / "xds")
    assert files["dynamic_resources"]["cds_config"]["path_config_source"]["path"] == str(tmp_path / "xds" / "cds.json")


def xs_ads() -> dict[str, Any]:
    return {"ads": {}, "resource_api_version": "V3"}


@contextlib.asynccontextmanager
async def _serving(socket: Path, dirs: list[Path]) -> AsyncIterator[tuple[Any, Any]]:
    """The server for one Envoy ``envoy-1`` on ``socket``, and one ADS stream to it: (requests, call)."""
    stop = asyncio.Event()
    server = asyncio.ensure_future(xs.serve(socket, {"envoy-1": dirs}, stop))
    while not socket.exists():
        await asyncio.sleep(0.01)
    requests: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()

    async def feed() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while (item := await requests.get()) is not None:
            yield item
    channel = grpc.aio.insecure_channel(f"unix:{socket}")
    try:
        yield requests, ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(feed())
    finally:
        await requests.put(None)
        await channel.close()
        stop.set()
        await server


def test_a_renamed_document_is_pushed_and_an_ack_is_not_answered(envoy_dirs: tuple[Path, Path, Path],
                                                                   tmp_path: Path) -> None:
    xds, sds, _ = envoy_dirs
    socket = tmp_path / "s.sock"

    async def scenario() -> list[tuple[str, int]]:
        async with _serving(socket, [xds, sds]) as (requests, call):
            assert stat.S_IMODE(socket.stat().st_mode) == 0o600  # it serves private keys
            await requests.put(discovery_pb2.DiscoveryRequest(node={"id": "envoy-1"}, type_url=ROUTE,
                                                              resource_names=["a", "b"]))
            first = await asyncio.wait_for(call.read(), 5)
            await requests.put(discovery_pb2.DiscoveryRequest(type_url=ROUTE, resource_names=["a", "b"],
                                                              version_info=first.version_info,
                                                              response_nonce=first.nonce))  # the ACK
            _write(xds / "rds_a.json", _route("a", 4))
            _write(xds / "rds_b.json", _route("b", 4))
            second = await asyncio.wait_for(call.read(), 5)
            with pytest.raises(asyncio.TimeoutError):  # nothing more: no answer to the ACK, no half-written state
                await asyncio.wait_for(call.read(), 0.3)
        return [(first.version_info, len(first.resources)), (second.version_info, len(second.resources))]

    assert asyncio.run(scenario()) == [("3", 2), ("4", 2)]


def test_an_unknown_envoy_is_refused(envoy_dirs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    xds, sds, _ = envoy_dirs

    async def scenario() -> grpc.StatusCode:
        async with _serving(tmp_path / "s.sock", [xds, sds]) as (requests, call):
            await requests.put(discovery_pb2.DiscoveryRequest(node={"id": "stranger"}, type_url=ROUTE))
            try:
                await asyncio.wait_for(call.read(), 5)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    assert asyncio.run(scenario()) is grpc.StatusCode.PERMISSION_DENIED


def test_without_inotify_two_quick_renames_are_still_seen(envoy_dirs: tuple[Path, Path, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import inotify_simple

    def refused(*args: Any, **kwargs: Any) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(inotify_simple, "INotify", refused)
    xds, sds, _ = envoy_dirs

    async def scenario() -> list[str]:
        async with _serving(tmp_path / "s.sock", [xds, sds]) as (requests, call):
            await requests.put(discovery_pb2.DiscoveryRequest(node={"id": "envoy-1"}, type_url=ROUTE,
                                                              resource_names=["a", "b"]))
            first = await asyncio.wait_for(call.read(), 5)
            await requests.put(discovery_pb2.DiscoveryRequest(type_url=ROUTE, resource_names=["b", "a"],
                                                              version_info=first.version_info,
                                                              response_nonce=first.nonce))  # an ACK, reordered
            await asyncio.sleep(3 * xs.POLL_S)
            _write(xds / "rds_a.json", _route("a", 4))
            _write(xds / "rds_b.json", _route("b", 4))
            second = await asyncio.wait_for(call.read(), 5)
        return [first.version_info, second.version_info]

    assert asyncio.run(scenario()) == ["3", "4"]
