"""The SDS server that gives istiod's Envoys their certificates: pilot-agent's job in a pod.

istiod's listeners and clusters take their mTLS material over SDS from the bootstrap cluster
``sds-grpc``, by two names: ``default`` (the workload's own leaf and key) and ``ROOTCA`` (the roots it
trusts). In a pod, pilot-agent answers on a unix socket with certificates istiod's CA signed; here one
server answers every local Envoy on one unix socket, with certificates the harness's own CA signed for
``spiffe://cluster.local/ns/<namespace>/sa/<service>`` (what istiod expects of a WorkloadEntry with
that service account). Which Envoy asks is in the request's node id (``sidecar~IP~NAME.NS~...``).

Files are read again whenever they change (a rotation renames them into place), and every open stream
is sent the new material at once, as pilot-agent does when its certificate is renewed.

Run as ``python -m harness.mesh.istio.sds --socket PATH --identities FILE``; the identities file maps
each Envoy's NAME to its ``cert`` and ``key`` files, and ``trust`` to the roots' file. Key material
is never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.protobuf import any_pb2

from harness._grpc_socket import serve_private

__all__ = ["LEAF", "ROOTS", "SdsServer", "main", "node_name"]

LEAF = "default"
ROOTS = "ROOTCA"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
POLL_S = 0.1


def node_name(node_id: str) -> str:
    """``sidecar~127.1.0.2~reviews-v1-0.shop~shop.svc.cluster.local`` → ``reviews-v1-0``."""
    parts = node_id.split("~")
    return parts[2].rsplit(".", 1)[0] if len(parts) >= 3 else node_id


class SdsServer(sds_pb2_grpc.SecretDiscoveryServiceServicer):  # type: ignore[misc]
    """StreamSecrets for every Envoy, by node name; pushes when a file it serves changes."""

    def __init__(self, identities: dict[str, Any]) -> None:
        self.identities = identities
        self.changed = asyncio.Condition()
        self.generation = 0

    def _material(self, name: str, resource: str) -> secret_pb2.Secret:
        if resource == ROOTS:
            roots = Path(self.identities["trust"]).read_bytes()
            return secret_pb2.Secret(name=ROOTS, validation_context={"trusted_ca": {"inline_bytes": roots}})
        own = self.identities["nodes"][name]
        return secret_pb2.Secret(name=LEAF, tls_certificate={
            "certificate_chain": {"inline_bytes": Path(own["cert"]).read_bytes()},
            "private_key": {"inline_bytes": Path(own["key"]).read_bytes()}})

    def _response(self, name: str, resources: list[str]) -> discovery_pb2.DiscoveryResponse:
        secrets = [self._material(name, r) for r in resources if r in (LEAF, ROOTS)]
        packed = []
        digest = hashlib.sha256()
        for secret in secrets:
            item = any_pb2.Any()
            item.Pack(secret)
            packed.append(item)
            digest.update(item.value)
        version = digest.hexdigest()[:16]
        return discovery_pb2.DiscoveryResponse(version_info=version, resources=packed, type_url=SECRET_TYPE,
                                               nonce=f"{version}-{self.generation}")

    async def StreamSecrets(self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
                            context: grpc.aio.ServicerContext) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None:
            return
        name = node_name(first.node.id)
        if name not in self.identities["nodes"]:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"no identity for {first.node.id}")
        names = list(first.resource_names)
        try:
            sent = self._response(name, names)
        except OSError as exc:  # a certificate file gone: say which (the path, never the key), and end the stream
            await context.abort(grpc.StatusCode.NOT_FOUND, f"cannot read {exc.filename}: {exc.strerror}")
        yield sent
        pending_request = asyncio.ensure_future(anext(requests, None))
        while True:
            async with self.changed:
                generation = self.generation
            waiter = asyncio.ensure_future(self._wait_change(generation))
            done, _ = await asyncio.wait({pending_request, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if pending_request in done:
                waiter.cancel()
                request = pending_request.result()
                if request is None:
                    return
                pending_request = asyncio.ensure_future(anext(requests, None))
                if list(request.resource_names) == names and request.response_nonce:
                    continue  # an ACK (or a NACK, which Envoy logs): nothing new to send
                names = list(request.resource_names)
                sent = self._response(name, names)
                yield sent
                continue
            fresh = self._response(name, names)  # a served file changed
            if fresh.version_info != sent.version_info:
                sent = fresh
                yield sent

    async def _wait_change(self, generation: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.generation != generation)

    async def watch(self) -> None:
        """Bump the generation whenever a served file's content changes (rotations rename files in)."""
        paths = [Path(self.identities["trust"])] + [Path(p) for n in self.identities["nodes"].values()
                                                    for p in (n["cert"], n["key"])]
        seen = _fingerprint(paths)
        while True:
            await asyncio.sleep(POLL_S)
            now = _fingerprint(paths)
            if now != seen:
                seen = now
                async with self.changed:
                    self.generation += 1
                    self.changed.notify_all()


def _fingerprint(paths: list[Path]) -> list[tuple[int, int] | None]:
    out: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            st = path.stat()
            out.append((st.st_ino, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return out


async def serve(socket_path: Path, identities: dict[str, Any]) -> None:
    """Serve until SIGTERM/SIGINT, then remove the socket."""
    sds = SdsServer(identities)
    tasks: list[asyncio.Future[None]] = []
    await serve_private(socket_path, lambda server: sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(
        sds, server), lambda: tasks.append(asyncio.ensure_future(sds.watch())))
    for task in tasks:
        task.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SDS for the Envoys of the local istio mesh")
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--identities", required=True, type=Path)
    args = parser.parse_args(argv)
    identities = json.loads(args.identities.read_text())
    asyncio.run(serve(args.socket, identities))


if __name__ == "__main__":
    main()
