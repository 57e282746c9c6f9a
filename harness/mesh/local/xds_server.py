"""The local mesh's xDS server: every Envoy's listeners, clusters, routes, runtime and secrets over one
gRPC ADS stream, read from the same files the harness has always written.

Why a server: an Envoy reading file-based xDS holds one inotify instance per watched subscription (7 for
a sidecar with two callees), and the kernel's default limit is 128 instances per user, so a local mesh
stopped at about 18 Envoys across everything its user ran. Served over ADS, an Envoy watches nothing;
this server watches every Envoy's directories with ONE inotify instance, and pushes what changed.

Why from files: every writer of the harness (up, faults, shifts, policies, rotations, ``cleanup`` after
SIGKILL) already writes each Envoy's documents atomically into its state directory, and the journal's
exact undo is defined on them. The server turns a rename into a push: nothing else changes, and the
files stay what an operator reads to see what each Envoy was given.

What is sent, per Envoy and type (state of the world, one response per type):
  * LDS and CDS: every resource of the type's document (``lds.json``, ``cds.json``);
  * RDS, RTDS and SDS: the resources the Envoy asked for, from every document of the type.
A response's ``version_info`` is the documents' own ``version_info`` (what the driver waits to see in
``<prefix>.version_text``). While the documents of one type disagree on their version (the driver is
midway through rewriting an Envoy's routes), nothing is sent for that type: a route would otherwise show
the new version while still holding the old content. Secrets name certificate files: their bytes are
inlined (``inline_bytes``) and the version is completed with the bytes' digest, since a rotation renames
new files into place without touching the document. Key material is never logged.

Run as ``python -m harness.mesh.local.xds_server --socket PATH --nodes FILE``; FILE maps each Envoy's
node id to the directories of its documents.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import importlib
import json
import logging
import os
import pkgutil
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import json_format

from harness._grpc_socket import serve_private
from harness.mesh.local.ca import DATA_LINK

__all__ = ["Documents", "XdsServer", "main", "serve"]

log = logging.getLogger("harness.xds")

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
SECRET_DOCUMENTS = frozenset({"leaf.json", "trust.json"})
WILDCARD = frozenset({LISTENER, CLUSTER})
"""Types whose response always holds every resource (state of the world)."""

POLL_S = 0.02
"""Polling period when no inotify instance can be had (the user's limit is spent): slower, never stuck."""

_imported: set[str] = set()


def _register(type_url: str) -> None:
    """Import every generated module of the type's package, so that JSON naming it can be parsed."""
    package = type_url.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if package in _imported:
        return
    _imported.add(package)
    try:
        module = importlib.import_module(package)
    except ImportError:
        return  # json_format then names the unknown type
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{package}.{info.name}")


def _types(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        if isinstance(value.get("@type"), str):
            yield value["@type"]
        for item in value.values():
            yield from _types(item)
    elif isinstance(value, list):
        for item in value:
            yield from _types(item)


def _version_dir(directory: Path) -> Path | None:
    """The version ``..data`` points at now in the local CA's layout (``NAME -> ..data/NAME``,
    ``..data -> ..vN``); None where there is no such link."""
    try:
        return directory / os.readlink(directory / DATA_LINK)
    except OSError:
        return None


def _inline_secret(resource: dict[str, Any], digest: Any) -> set[Path]:
    """Inline a Secret's files (``filename`` → ``inline_bytes``: the Envoy has no file to watch); return
    the directories they live in, which are watched for rotations.

    A certificate and its key are read from one version of their directory, resolved once: a rotation
    that renames ``..data`` between the two reads would otherwise pair a certificate with another's key.
    """
    dirs: set[Path] = set()
    for holder_key, fields in (("tls_certificate", ("certificate_chain", "private_key")),
                               ("validation_context", ("trusted_ca",))):
        holder = resource.get(holder_key)
        if not isinstance(holder, dict):
            continue
        holder.pop("watched_directory", None)
        versions: dict[Path, Path | None] = {}
        for name in fields:
            source = holder.get(name)
            if not isinstance(source, dict) or "filename" not in source:
                continue
            path = Path(source.pop("filename"))
            dirs.add(path.parent)
            if path.parent not in versions:
                versions[path.parent] = _version_dir(path.parent)
            version = versions[path.parent]
            raw = (version / path.name if version is not None else path).read_bytes()
            digest.update(raw)
            source["inline_bytes"] = base64.b64encode(raw).decode()
    return dirs


@dataclass
class Parsed:
    """One document: its type, version, resources by name (packed), and the directories it reads."""

    type_url: str
    version: str
    resources: dict[str, Any]
    reads: set[Path] = field(default_factory=set)
    content: str = ""


def parse_document(path: Path) -> Parsed | None:
    """A file-xDS document (a DiscoveryResponse as JSON) as packed resources; None if it holds none."""
    doc = json.loads(path.read_text())
    items = doc.get("resources") or []
    if not items:
        return None
    digest = hashlib.sha256()
    reads: set[Path] = set()
    type_url = items[0].get("@type", "")
    for item in items:
        _register(item.get("@type", ""))
        for inner in _types(item):
            _register(inner)
        if item.get("@type") == SECRET:
            reads |= _inline_secret(item, digest)
    message = discovery_pb2.DiscoveryResponse()
    json_format.ParseDict({"resources": items}, message)
    resources = {}
    for packed, item in zip(message.resources, items, strict=True):
        resources[str(item.get("name", ""))] = packed
        digest.update(packed.SerializeToString(deterministic=True))
    return Parsed(type_url, str(doc.get("version_info", "")), resources, reads, digest.hexdigest())


class Documents:
    """One Envoy's documents, re-read only when a file's identity (inode, mtime, size) changed."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs
        self._cache: dict[Path, tuple[tuple[int, int, int], Parsed | None]] = {}

    def current(self) -> list[Parsed] | None:
        """Every document of this Envoy, parsed; None while one of them cannot be read.

        Why None rather than the others: a state-of-the-world response without a document's resources
        would make the Envoy delete them (all its listeners, for an unreadable ``lds.json``). Documents are
        renamed into place whole, so an unreadable one is damage to report, not a moment to wait out.
        """
        out: list[Parsed] = []
        seen: set[Path] = set()
        broken = False
        for directory in self.dirs:
            try:
                names = sorted(os.listdir(directory))
            except OSError:
                continue
            for name in names:
                if not name.endswith(".json") or name.startswith("."):
                    continue
                path = directory / name
                seen.add(path)
                try:
                    st = path.stat()
                    key = (st.st_ino, st.st_mtime_ns, st.st_size)
                    cached = self._cache.get(path)
                    if cached is None or cached[0] != key:
                        self._cache[path] = (key, parse_document(path))
                except (OSError, ValueError, json_format.ParseError) as exc:
                    # a secret's error could quote its material: name the exception only
                    detail = type(exc).__name__ if name in SECRET_DOCUMENTS else str(exc)[:300]
                    log.warning("cannot read %s, nothing is sent to this Envoy until it can: %s", path, detail)
                    self._cache.pop(path, None)
                    broken = True
                    continue
                parsed = self._cache[path][1]
                if parsed is not None:
                    out.append(parsed)
        for gone in set(self._cache) - seen:
            del self._cache[gone]
        return None if broken else out

    def invalidate(self, directory: Path, name: str | None = None) -> None:
        """Forget what a change in ``directory`` (to its file ``name``, or any) may have made stale.

        Why not trust the cache key alone: a document replaced twice within one tick of the file system's
        clock can come back with the same inode number, size and mtime (a route's version 18 → 19)."""
        for path, (_key, parsed) in list(self._cache.items()):
            if (path.parent == directory and name in (None, path.name)) or \
                    (parsed is not None and directory in parsed.reads):
                del self._cache[path]

    def response(self, type_url: str, names: list[str],
                 current: list[Parsed] | None = None) -> discovery_pb2.DiscoveryResponse | None:
        """This Envoy's response for one type; None while there is nothing to send: a document cannot be
        read, the documents holding what is asked disagree on their version, or nothing is asked (an
        empty list of names, for a type other than LDS and CDS, unsubscribes)."""
        current = self.current() if current is None else current
        if current is None:
            return None
        wildcard = type_url in WILDCARD
        if not wildcard and not names:
            return None
        wanted = set(names)
        docs = [d for d in current if d.type_url == type_url
                and (wildcard or any(n in wanted for n in d.resources))]
        versions = {d.version for d in docs}
        if len(versions) > 1:
            return None
        resources = [r for d in docs for n, r in d.resources.items() if wildcard or n in wanted]
        version = versions.pop() if versions else "0"
        if type_url == SECRET:  # the files a secret names change under an unchanged document
            version += "-" + hashlib.sha256("".join(d.content for d in docs).encode()).hexdigest()[:12]
        return discovery_pb2.DiscoveryResponse(version_info=version, resources=resources, type_url=type_url)

    def watched(self) -> set[Path]:
        """Every directory whose change may change a response: the documents' and the secrets' files'."""
        out = set(self.dirs)
        for _key, parsed in self._cache.values():
            if parsed is not None:
                out |= parsed.reads
        return out


class XdsServer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    """StreamAggregatedResources for every Envoy of one mesh, by node id."""

    def __init__(self, nodes: dict[str, list[Path]]) -> None:
        self.documents = {node: Documents(dirs) for node, dirs in nodes.items()}
        self.generation = dict.fromkeys(nodes, 0)
        self.changed: dict[str, asyncio.Event] = {node: asyncio.Event() for node in nodes}
        self.nonce = 0

    def touch(self, nodes: Iterable[str]) -> None:
        """A change for these Envoys: a stream compares generations before it waits, so a change that
        comes while it is busy sending is never missed; the event only ends a wait."""
        for node in nodes:
            self.generation[node] += 1
            event, self.changed[node] = self.changed[node], asyncio.Event()
            event.set()

    async def StreamAggregatedResources(
        self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest], context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        requests = aiter(request_iterator)
        node = ""
        seen = -1
        subscribed: dict[str, list[str]] = {}
        sent: dict[str, tuple[str, bytes]] = {}
        pending = asyncio.ensure_future(anext(requests, None))
        try:
            while True:
                due: list[str] = []
                if node and self.generation[node] != seen:
                    seen = self.generation[node]
                    due = list(subscribed)
                else:
                    waiter = asyncio.ensure_future(self.changed[node].wait()) if node else None
                    done, _ = await asyncio.wait({pending} | ({waiter} if waiter else set()),
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if waiter:
                        waiter.cancel()
                    if pending not in done:
                        continue  # a change: the generation differs now
                    request = pending.result()
                    if request is None:
                        return
                    pending = asyncio.ensure_future(anext(requests, None))
                    if not node:
                        node = request.node.id
                        if node not in self.documents:
                            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"no such Envoy: {node}")
                    if request.HasField("error_detail"):
                        log.warning("%s rejected %s version %s: %s", node, request.type_url.rsplit(".", 1)[-1],
                                    request.version_info, request.error_detail.message)
                    names = list(request.resource_names)
                    known = subscribed.get(request.type_url)
                    if known is None or set(known) != set(names) or not request.response_nonce:
                        subscribed[request.type_url] = names
                        sent.pop(request.type_url, None)  # new interest: answer even if nothing changed
                        due.append(request.type_url)
                docs = self.documents[node]
                current = docs.current() if due else None  # once per wake, whatever the types due
                for type_url in due:
                    response = docs.response(type_url, subscribed[type_url], current) if current is not None \
                        else None
                    if response is None:
                        continue
                    body = b"".join(r.SerializeToString(deterministic=True) for r in response.resources)
                    if sent.get(type_url) == (response.version_info, body):
                        continue
                    sent[type_url] = (response.version_info, body)
                    self.nonce += 1
                    response.nonce = str(self.nonce)
                    yield response
        finally:
            pending.cancel()


class Watcher:
    """Which Envoys a changed directory concerns, over one inotify instance (or polling without one)."""

    def __init__(self, server: XdsServer) -> None:
        self.server = server
        self.by_dir: dict[Path, set[str]] = {}
        self.inotify: Any = None
        self.wd: dict[int, Path] = {}
        self.poller: asyncio.Future[None] | None = None

    def refresh(self, nodes: Iterable[str] | None = None) -> None:
        """(Re)learn which directories each Envoy's responses read; watch those not watched yet."""
        for node in self.server.documents if nodes is None else nodes:
            docs = self.server.documents[node]
            docs.current()  # parses what changed, so that the secrets' directories are known
            for directory in docs.watched():
                self.by_dir.setdefault(directory, set()).add(node)
        if self.inotify is None:
            return
        from inotify_simple import flags  # type: ignore[import-untyped]

        mask = flags.CLOSE_WRITE | flags.MOVED_TO | flags.CREATE | flags.DELETE
        known = set(self.wd.values())
        for directory in self.by_dir:
            if directory not in known:
                try:
                    self.wd[self.inotify.add_watch(str(directory), mask)] = directory
                except OSError as exc:  # not there (yet), or the user's watch limit: say so
                    log.warning("cannot watch %s (%s): changes in it are seen with the next event", directory,
                                exc.strerror or exc)

    def start(self) -> str:
        try:
            from inotify_simple import INotify

            self.inotify = INotify(nonblocking=True)
        except (ImportError, OSError) as exc:
            log.warning("no inotify instance (%s): polling every %g s", exc, POLL_S)
            self.inotify = None
        self.refresh()
        if self.inotify is not None:
            asyncio.get_running_loop().add_reader(self.inotify.fileno(), self._on_events)
            return "inotify"
        self.poller = asyncio.ensure_future(self._poll())
        return "polling"

    def _on_events(self) -> None:
        events = self.inotify.read(timeout=0)
        if any(e.wd == -1 for e in events):  # the kernel's queue overflowed: anything may have changed
            self._touched({(directory, None) for directory in self.by_dir})
            return
        changes = {(self.wd[e.wd], e.name) for e in events
                   if e.wd in self.wd and not (e.name.startswith(".") and e.name.endswith(".tmp"))}
        self._touched(changes)

    def _touched(self, changes: set[tuple[Path, str | None]]) -> None:
        """Invalidate and wake the Envoys whose documents changed: (directory, file name or None for any)."""
        touched: set[str] = set()
        for directory, name in changes:
            for node in self.by_dir.get(directory, set()):
                self.server.documents[node].invalidate(directory, name)
                touched.add(node)
        if touched:
            self.refresh(touched)  # a secret re-pointed at another directory: watch that one too
            self.server.touch(touched)

    async def _poll(self) -> None:
        """Every entry's name, inode, size and mtime: two renames within one tick of the file system's
        clock leave the newest mtime unchanged, never the inodes."""
        seen: dict[Path, frozenset[tuple[str, int, int, int]]] = {}
        while True:
            await asyncio.sleep(POLL_S)
            changes: set[tuple[Path, str | None]] = set()
            for directory in list(self.by_dir):
                try:
                    signature = frozenset((e.name, *_stamp(e)) for e in os.scandir(directory))
                except OSError:
                    continue
                if seen.get(directory, signature) != signature:
                    changes.add((directory, None))
                seen[directory] = signature
            self._touched(changes)


def _stamp(entry: os.DirEntry[str]) -> tuple[int, int, int]:
    st = entry.stat(follow_symlinks=False)
    return st.st_ino, st.st_size, st.st_mtime_ns


async def serve(socket_path: Path, nodes: dict[str, list[Path]], stop: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set), then remove the socket."""
    xds = XdsServer(nodes)
    watcher = Watcher(xds)

    def started() -> None:
        log.warning("serving %d Envoys on %s (%s)", len(nodes), socket_path, watcher.start())

    await serve_private(socket_path, lambda server: ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(
        xds, server), started, stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="xDS over ADS for the Envoys of the local mesh")
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--nodes", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.WARNING)
    nodes = {node: [Path(d) for d in dirs] for node, dirs in json.loads(args.nodes.read_text()).items()}
    asyncio.run(serve(args.socket, nodes))


if __name__ == "__main__":
    main()
