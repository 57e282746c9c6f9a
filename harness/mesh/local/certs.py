"""Certificate changes on the local mesh: rotations and untrusted leaves, published the way Envoy reads them.

Every sidecar reads two file-based SDS secrets (``envoy_config.secret_files``): its leaf, from
``pki/leaf/<service>`` (one directory per service, shared by its instances; ``gateway`` for the gateway),
and the trust bundle, from ``pki/trust`` (one for the whole mesh). Both are ``..data`` directories
(:mod:`harness.mesh.local.ca`): a change is one atomic rename that the xDS server (or, for ``mesh:
compose``, Envoy's watched directory) picks up, so a sidecar never sees a certificate paired with the
wrong key, and the paths never change.

* ``leaf``: the targets' leaves are re-issued by the CA whose root heads the trust bundle in force.
* ``ca``: three stages, each confirmed on every Envoy (admin ``/certs``) before the next, each held
  ``hold`` under load: (1) the overlap bundle [new root, old bundle...]; (2) every leaf re-issued from the
  new root; (3) the old root retired: the bundle [new root] alone. Envoy 1.40's ``/certs`` lists every
  root of a bundle (measured: the overlap shows both serials on every sidecar), older Envoys only the
  first, so the retired bundle starts with the new root *re-signed* (same subject and key, another
  serial): each publication is visible by its own serials on either.
* ``untrusted``: the target instances' leaf secret (their own ``sds/leaf.json``) is re-pointed at a leaf
  with their identity from a CA nobody trusts (``certs/untrusted``); other instances are untouched.

Each confirmed stage is followed by a reconnect (``LocalMesh.reconnect``): every mTLS cluster names the
material in force (:func:`material_digest`), so it is re-created, its pooled connections drain, and the
next requests handshake with what is served now. Without it, pooled connections under steady load would
never handshake again, and a rotation would "drop nothing" without one handshake using the new
certificates (measured: an untrusted leaf went unnoticed by every caller for a whole 4 s window).

Undo is exact and works from a fresh process: before anything changes, the material in force is copied
to ``certs/saved`` (by serial for a leaf, by digest for a bundle; keys stay 0600), and the undo names it.
It first makes the bundle trust both what is served now and what will be served again, then
re-publishes the saved leaves, then the saved bundle, each through the same ``..data`` rename and
confirmed; whatever stage a run was killed in, that order drops no handshake. Every stage is appended to
``certs/stages.jsonl`` before it is made, and again once confirmed (with how long that took).

Probes: :func:`probe` plays three bad peers against an instance's inbound listener (plaintext; a client
certificate from the untrusted CA; one from the trusted CA with an identity outside the trust domain)
and reports what the listener did; it changes nothing. No function here logs or returns key material.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from harness._errors import ConfigRejected, FaultError, MeshError
from harness.mesh.base import Prepared
from harness.mesh.intents import CertChange
from harness.mesh.local import envoy_config as ec
from harness.mesh.local.ca import DATA_LINK, LocalCA, atomic_publish, serial_hex
from harness.mesh.local.topology import GATEWAY_ID
from harness.metrics.tls import PROBE_KINDS, PeerProbe, ProbeKind, ProbeOutcome, ServedCert
from harness.model.durations import format_duration

if TYPE_CHECKING:
    from harness.mesh.local.driver import EnvoyNode, LocalMesh

__all__ = ["apply", "log_stage", "material_digest", "prepare", "probe", "served", "served_all", "stage_log", "undo"]

CONFIRM_TIMEOUT_S = 10.0
"""How long a stage may take to show on every Envoy (measured: about 0.1 s; a loaded 2-core box, more)."""

WRONG_IDENTITY = "spiffe://wrong-identity.invalid/ns/default/sa/probe"
"""The identity of the wrong-identity probe: signed by the trusted CA, outside the mesh's trust domain."""

_CERT = "tls.crt"
_KEY = "tls.key"
_BUNDLE = "ca.crt"


# ------------------------------------------------------------------------------------------- paths
def _pki(mesh: LocalMesh) -> Path:
    return mesh.state_dir / "pki"


def _certs(mesh: LocalMesh) -> Path:
    return mesh.state_dir / "certs"


def _mkdirs(path: Path) -> Path:
    """``path`` and its missing parents, each 0700 (mode given at creation: never readable by others)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir(mode=0o700)
    return path


def _leaf_dir(mesh: LocalMesh, name: str) -> Path:
    return _pki(mesh) / "leaf" / name


def _trust_dir(mesh: LocalMesh) -> Path:
    return _pki(mesh) / "trust"


def _leaf_names(mesh: LocalMesh) -> list[str]:
    """Every leaf of the mesh: one per service, and the gateway's."""
    return [s.name for s in mesh.env.spec.services] + [GATEWAY_ID]


def _leaf_of(node: EnvoyNode) -> str:
    return node.instance.service if node.instance else GATEWAY_ID


def _nodes_with(mesh: LocalMesh, names: Iterable[str]) -> list[EnvoyNode]:
    wanted = set(names)
    return [n for n in mesh.nodes() if _leaf_of(n) in wanted]


# ------------------------------------------------------------------------------------------- material
def _published(directory: Path, names: tuple[str, ...]) -> dict[str, bytes] | None:
    """The files of the version ``..data`` points at, read through that one version (a consistent set
    even if a publication follows); None when nothing was published there."""
    try:
        version = os.readlink(directory / DATA_LINK)
    except OSError:
        return None
    try:
        return {name: (directory / version / name).read_bytes() for name in names}
    except OSError:
        return None


def _serial_of(pem: bytes) -> str:
    return serial_hex(x509.load_pem_x509_certificate(pem))


def _leaf_serial(mesh: LocalMesh, name: str) -> str | None:
    files = _published(_leaf_dir(mesh, name), (_CERT,))
    return _serial_of(files[_CERT]) if files else None


def _bundle(mesh: LocalMesh) -> bytes | None:
    files = _published(_trust_dir(mesh), (_BUNDLE,))
    return files[_BUNDLE] if files else None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _roots(bundle: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle)


def _pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_id(cert: x509.Certificate) -> str:
    """A root's directory name under ``certs/roots``: the digest of its public key, the same for every
    certificate of that root (a re-signed one included)."""
    return hashlib.sha256(_spki(cert)).hexdigest()[:16]


def _cas(mesh: LocalMesh) -> list[LocalCA]:
    """Every CA of the mesh that holds a key: the original one and the roots rotations introduced."""
    out = [LocalCA.load(_pki(mesh))]
    roots = _certs(mesh) / "roots"
    for directory in sorted(roots.iterdir()) if roots.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, KeyError):
            out.append(LocalCA.load(directory))
    return out


def _ca_of(mesh: LocalMesh, root: x509.Certificate) -> LocalCA | None:
    key = _spki(root)
    return next((ca for ca in _cas(mesh) if _spki(ca.root_cert) == key), None)


def current_ca(mesh: LocalMesh) -> LocalCA:
    """The CA whose root heads the trust bundle in force: the one that signs routine leaves now (after a
    root rotation, the new root, not the one ``up`` made)."""
    bundle = _bundle(mesh)
    if bundle is None:
        raise FaultError(f"no trust bundle is published in {_trust_dir(mesh)}: is the mesh up?")
    ca = _ca_of(mesh, _roots(bundle)[0])
    if ca is None:
        raise FaultError(f"the root heading {_trust_dir(mesh) / _BUNDLE} belongs to no CA of this mesh")
    return ca


def _save(directory: Path, files: dict[str, bytes]) -> None:
    """Keep ``files`` under ``directory`` (in the ``..data`` layout: complete once ``..data`` exists),
    unless they are kept there already. Keys are written 0600 from the start."""
    if (directory / DATA_LINK).exists():
        return
    _mkdirs(directory.parent)
    atomic_publish(directory, {name: (data, 0o600 if name == _KEY else 0o644) for name, data in files.items()})


def _saved_leaf(mesh: LocalMesh, name: str, serial: str) -> Path:
    return _certs(mesh) / "saved" / "leaf" / name / serial


def _saved_trust(mesh: LocalMesh, digest: str) -> Path:
    return _certs(mesh) / "saved" / "trust" / digest


def _write_json(path: Path, data: Any) -> None:
    """Atomic replace in the watched SDS directory: Envoy reacts to the move, never to a partial file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def material_digest(mesh: LocalMesh) -> str:
    """A digest of the certificates every sidecar uses now: the trust bundle, every service's leaf, and
    each sidecar's leaf as its SDS secret points at it (an untrusted leaf included).

    Why: Envoy applies a new secret to new connections only, and under steady load its pooled connections
    never close, so a rotation would pass without one handshake using the new certificates. The local
    mesh's mTLS clusters carry this digest (``envoy_config.clusters``): when the material changes, each
    re-rendered cluster is a new cluster, its old pool drains (requests in flight finish), and the next
    requests handshake with what is served now. Restoring the material restores the digest, so an undone
    change leaves every cluster exactly as it was.
    """
    digest = hashlib.sha256(_bundle(mesh) or b"")
    for name in _leaf_names(mesh):
        files = _published(_leaf_dir(mesh, name), (_CERT,))
        digest.update(name.encode() + b"\0" + (files[_CERT] if files else b""))
    for node in sorted(mesh.nodes(), key=lambda n: n.id):
        try:
            doc = json.loads((mesh.sds_dir(node.id) / "leaf.json").read_text())
            chain = Path(doc["resources"][0]["tls_certificate"]["certificate_chain"]["filename"])
            data = (chain.parent / os.readlink(chain.parent / DATA_LINK) / chain.name).read_bytes() \
                if (chain.parent / DATA_LINK).is_symlink() else chain.read_bytes()
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            data = b""
        digest.update(node.id.encode() + b"\0" + data)
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------- the stage log
def log_stage(mesh: LocalMesh, entry: dict[str, Any]) -> None:
    """Append one line to ``certs/stages.jsonl`` and fsync it: a stage is on disk before it is made."""
    path = _mkdirs(_certs(mesh)) / "stages.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (json.dumps({"t": round(time.time(), 3), **entry}) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def stage_log(mesh: LocalMesh) -> list[dict[str, Any]]:
    """Every stage logged so far, oldest first (what a killed run got to, and how long each took)."""
    path = _certs(mesh) / "stages.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


# ------------------------------------------------------------------------------------------- observing
def served(mesh: LocalMesh, node: EnvoyNode) -> ServedCert:
    """The serials one Envoy's TLS contexts use now, from its admin ``/certs``: every context of a sidecar
    (its inbound listener, each outbound cluster) shares the two secrets, so each tuple normally holds
    one serial, and two for the instant a swap rebuilds them."""
    try:
        data = httpx.get(f"{node.admin}/certs", timeout=3.0).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise MeshError(f"cannot read the certificates of {node.id} at {node.admin}/certs: {exc}") from None
    leaf: set[str] = set()
    trust: set[str] = set()
    for entry in data.get("certificates") or []:
        for cert in entry.get("cert_chain") or []:
            leaf.add(str(cert.get("serial_number", "")))
        for cert in entry.get("ca_cert") or []:
            trust.add(str(cert.get("serial_number", "")))
    return ServedCert(tuple(sorted(leaf)), tuple(sorted(trust)))


def served_all(mesh: LocalMesh) -> dict[str, ServedCert]:
    """:func:`served` for every Envoy of the mesh that answers (a node that does not is left out)."""
    out: dict[str, ServedCert] = {}
    for node in mesh.nodes():
        with contextlib.suppress(MeshError):
            out[node.id] = served(mesh, node)
    return out


def _await(mesh: LocalMesh, want: dict[str, Callable[[ServedCert], bool]], what: str,
           timeout_s: float = CONFIRM_TIMEOUT_S) -> None:
    """Poll ``/certs`` until every node in ``want`` passes its check; ConfigRejected names those that do not."""
    deadline = time.monotonic() + timeout_s
    pending = dict(want)
    last: dict[str, ServedCert] = {}
    while pending:
        for node_id, ok in list(pending.items()):
            with contextlib.suppress(MeshError):
                last[node_id] = served(mesh, mesh.node(node_id))
                if ok(last[node_id]):
                    del pending[node_id]
        if not pending:
            return
        if time.monotonic() > deadline:
            shown = "; ".join(f"{n}: {last[n].to_json() if n in last else 'no answer'}" for n in sorted(pending))
            raise ConfigRejected(f"{', '.join(sorted(pending))} did not show {what} within {timeout_s:g}s "
                                 f"(they show {shown}); see {mesh.logs_hint()}")
        time.sleep(0.02)  # each poll reads every pending Envoy's /certs: not a busy loop on 2 cores


def _all_of(checks: list[Callable[[ServedCert], bool]]) -> Callable[[ServedCert], bool]:
    return lambda cert: all(check(cert) for check in checks)


def _leaf_is(serial: str) -> Callable[[ServedCert], bool]:
    return lambda cert: cert.leaf == (serial,)


def _trust_is(roots: list[x509.Certificate]) -> Callable[[ServedCert], bool]:
    """The bundle ``roots`` is loaded: ``/certs`` lists every root of it (Envoy 1.40, measured), or only
    its first (the Envoys before; the re-signed heads below keep each publication visible there too)."""
    every = tuple(sorted(serial_hex(r) for r in roots))
    first = (serial_hex(roots[0]),)
    return lambda cert: cert.trust in (every, first)


# ------------------------------------------------------------------------------------------- prepare
def prepare(mesh: LocalMesh, intent: CertChange) -> Prepared:
    """Decide the change from the environment and the material on disk now; touch nothing.

    The undo names the material in force (a serial per leaf, a digest for the bundle). Without a running
    mesh (``plan``) there is none yet: the serials are null and the description says so."""
    from harness.mesh.local.changes import instance_ids

    names = _leaf_names(mesh)
    for target in intent.targets:
        if target not in names:
            raise FaultError(f"{intent.kind}: no service '{target}' in the environment; services are: "
                             f"{', '.join(names[:-1])}")
    if intent.what == "untrusted":
        if len(intent.targets) != 1:
            raise FaultError("cert-untrusted targets exactly one service")
        service = intent.targets[0]
        ids = [GATEWAY_ID] if service == GATEWAY_ID else instance_ids(mesh, service, intent.version)
        if not ids:
            raise FaultError(f"cert-untrusted: {service} has no instance of version {intent.version}")
        nodes = dict.fromkeys(ids, service)
        return Prepared(
            intent, f"give {', '.join(ids)} a leaf of {service} signed by a CA nobody trusts (certs/untrusted), "
                    "by re-pointing their SDS leaf secret at it; in force once each serves it (admin /certs)",
            {"op": "certs-untrusted", "nodes": nodes},
            {"op": "certs-restore", "nodes": nodes, "leaves": {}, "trust": None},
        )
    targets = list(intent.targets) or names
    leaves = targets if intent.what == "leaf" else names
    running = _bundle(mesh) is not None
    current = {name: _leaf_serial(mesh, name) if running else None for name in leaves}
    bundle = _bundle(mesh)
    trust = _digest(bundle) if intent.what == "ca" and bundle is not None else None
    undo = {"op": "certs-restore", "nodes": {}, "leaves": current, "trust": trust}
    envoys = len(_nodes_with(mesh, leaves)) if running else None
    count = f"{envoys} Envoys" if envoys is not None else "their Envoys"
    if intent.what == "leaf":
        return Prepared(
            intent, f"re-issue the leaves of {', '.join(targets)} from the CA in force, each published by one "
                    f"..data rename in pki/leaf/<service>; in force once {count} serve the new serials "
                    "(admin /certs)",
            {"op": "certs-rotate", "what": "leaf", "leaves": current, "trust": None, "hold_s": 0.0},
            undo,
        )
    held = f", held {format_duration(intent.hold_s)} under load" if intent.hold_s else ""
    every = f"all {len(mesh.nodes())} Envoys" if running else "every Envoy"
    stages = (
        f"overlap: publish the trust bundle [new root, current roots] in pki/trust (one ..data rename, read by "
        f"{every}); confirmed when each shows the new root in /certs{held}",
        f"re-issue every leaf ({', '.join(names)}) from the new root into pki/leaf/<service>; confirmed when "
        f"each Envoy serves its new serial{held}",
        "retire the old root: publish the trust bundle [new root] alone (re-signed, so /certs tells it from the "
        "overlap); confirmed when no Envoy shows the old one",
    )
    return Prepared(
        intent, f"rotate the mesh's root CA through an overlap bundle, in {len(stages)} stages, each confirmed on "
                f"{every} before the next",
        {"op": "certs-rotate", "what": "ca", "leaves": current, "trust": trust, "hold_s": intent.hold_s},
        undo, stages,
    )


# ------------------------------------------------------------------------------------------- apply
def apply(mesh: LocalMesh, do: dict[str, Any]) -> None:
    if do["op"] == "certs-untrusted":
        _untrusted(mesh, do["nodes"])
    else:
        _rotate(mesh, do)


def _keep_current(mesh: LocalMesh, leaves: dict[str, str | None], trust: str | None) -> None:
    """Copy the material in force to ``certs/saved`` before anything changes, and check it is what the
    change was prepared against (so the undo's names point at exactly what was there)."""
    for name, serial in leaves.items():
        files = _published(_leaf_dir(mesh, name), (_CERT, _KEY))
        if serial is None or files is None:
            raise FaultError(f"the leaf of {name} could not be read when the change was prepared or now; "
                             "prepare certificate changes with the mesh running")
        if _serial_of(files[_CERT]) != serial:
            raise FaultError(f"the leaf of {name} changed since the change was prepared "
                             f"({serial} then, {_serial_of(files[_CERT])} now)")
        _save(_saved_leaf(mesh, name, serial), files)
    if trust is not None:
        bundle = _bundle(mesh)
        if bundle is None or _digest(bundle) != trust:
            raise FaultError("the trust bundle changed since the change was prepared")
        _save(_saved_trust(mesh, trust), {_BUNDLE: bundle})


def _stage(mesh: LocalMesh, change: str, stage: str, make: Callable[[], dict[str, Callable[[ServedCert], bool]]],
           what: str) -> float:
    """Log a stage, make it, confirm it on every node it concerns, log that; return the ms it took."""
    log_stage(mesh, {"change": change, "stage": stage, "event": "start"})
    start = time.perf_counter()
    want = make()
    _await(mesh, want, what)
    mesh.reconnect()
    ms = (time.perf_counter() - start) * 1000
    log_stage(mesh, {"change": change, "stage": stage, "event": "confirmed", "ms": round(ms, 1),
                     "envoys": len(want)})
    return ms


def _publish_bundle(mesh: LocalMesh, roots: list[x509.Certificate]) -> dict[str, Callable[[ServedCert], bool]]:
    atomic_publish(_trust_dir(mesh), {_BUNDLE: (_pem(roots), 0o644)})
    loaded = _trust_is(roots)
    return {n.id: loaded for n in mesh.nodes()}


def _reissue(mesh: LocalMesh, ca: LocalCA, names: Iterable[str]) -> dict[str, Callable[[ServedCert], bool]]:
    """New leaves for ``names`` from ``ca``, published where the sidecars look; what each node must show."""
    issued = {name: ca.issue_leaf(name, into=_leaf_dir(mesh, name)).serial_hex for name in names}
    return {n.id: _leaf_is(issued[_leaf_of(n)]) for n in _nodes_with(mesh, issued)}


def _rotate(mesh: LocalMesh, do: dict[str, Any]) -> None:
    leaves: dict[str, str | None] = do["leaves"]
    _keep_current(mesh, leaves, do.get("trust"))
    change = f"{do['what']}-{secrets.token_hex(4)}"
    if do["what"] == "leaf":
        ca = current_ca(mesh)
        _stage(mesh, change, "leaves", lambda: _reissue(mesh, ca, leaves), "the new leaves")
        return
    hold = float(do.get("hold_s") or 0.0)
    bundle = _bundle(mesh)
    assert bundle is not None  # checked by _keep_current
    old = _roots(bundle)
    # The new root is made before the first stage and kept by its key, so an undo finds it.
    fresh = LocalCA.create(_mkdirs(_certs(mesh) / "roots") / f"new-{secrets.token_hex(8)}", mesh_trust_domain(mesh))
    new = _certs(mesh) / "roots" / _key_id(fresh.root_cert)
    os.rename(fresh.directory, new)
    ca = LocalCA.load(new)
    _stage(mesh, change, "overlap", lambda: _publish_bundle(mesh, [ca.root_cert, *old]), "the overlap bundle")
    time.sleep(hold)
    _stage(mesh, change, "leaves", lambda: _reissue(mesh, ca, leaves), "the leaves of the new root")
    time.sleep(hold)
    _stage(mesh, change, "retire", lambda: _publish_bundle(mesh, [ca.reissued_root()]), "the new root alone")


def mesh_trust_domain(mesh: LocalMesh) -> str:
    return LocalCA.load(_pki(mesh)).trust_domain


def _untrusted(mesh: LocalMesh, nodes: dict[str, str]) -> None:
    rogue = LocalCA.create_rogue(_mkdirs(_certs(mesh)) / "untrusted", mesh_trust_domain(mesh))
    trust = LocalCA.load(_pki(mesh)).trust_paths().ca_cert
    issued: dict[str, str] = {}
    want: dict[str, Callable[[ServedCert], bool]] = {}
    change = f"untrusted-{secrets.token_hex(4)}"
    log_stage(mesh, {"change": change, "stage": "untrusted", "event": "start"})
    start = time.perf_counter()
    for node_id, service in nodes.items():
        if service not in issued:
            issued[service] = rogue.issue_leaf(service).serial_hex
        paths = rogue.paths(service)
        _write_json(mesh.sds_dir(node_id) / "leaf.json",
                    ec.secret_files(paths.cert, paths.key, trust)["leaf.json"])
        want[node_id] = _leaf_is(issued[service])
    _await(mesh, want, "the untrusted leaf")
    mesh.reconnect()
    log_stage(mesh, {"change": change, "stage": "untrusted", "event": "confirmed",
                "ms": round((time.perf_counter() - start) * 1000, 1), "envoys": len(want)})


# ------------------------------------------------------------------------------------------- undo
def undo(mesh: LocalMesh, data: dict[str, Any]) -> None:
    """Give back the material named by ``data``; idempotent, and harmless for a change never made."""
    _restore_pointers(mesh, data.get("nodes") or {})
    leaves = {k: v for k, v in (data.get("leaves") or {}).items() if v is not None}
    saved_trust = data.get("trust")
    original: bytes | None = None
    if saved_trust:
        files = _published(_saved_trust(mesh, saved_trust), (_BUNDLE,))
        original = files[_BUNDLE] if files else None
    change = f"restore-{secrets.token_hex(4)}"
    if original is not None:
        _widen_trust(mesh, change, original)
    restore = {}
    for name, serial in leaves.items():
        files = _published(_saved_leaf(mesh, name, serial), (_CERT, _KEY))
        if files is not None and _leaf_serial(mesh, name) != serial:
            restore[name] = files
    if restore:
        def put_back() -> dict[str, Callable[[ServedCert], bool]]:
            for name, files in restore.items():
                atomic_publish(_leaf_dir(mesh, name), {_CERT: (files[_CERT], 0o644), _KEY: (files[_KEY], 0o600)})
            serials = {name: _serial_of(files[_CERT]) for name, files in restore.items()}
            return {n.id: _leaf_is(serials[_leaf_of(n)]) for n in _nodes_with(mesh, serials)}
        _stage(mesh, change, "restore-leaves", put_back, "the original leaves")
    if original is not None and _bundle(mesh) != original:
        def put_bundle() -> dict[str, Callable[[ServedCert], bool]]:
            atomic_publish(_trust_dir(mesh), {_BUNDLE: (original, 0o644)})
            loaded = _trust_is(_roots(original))
            return {n.id: loaded for n in mesh.nodes()}
        _stage(mesh, change, "restore-trust", put_bundle, "the original trust bundle")
    # Confirmed on every sidecar whatever was left to do: an undo run again after a crash may find the
    # files already restored, and must still see the Envoys serve them before it says so.
    checks: dict[str, list[Callable[[ServedCert], bool]]] = {}
    for name, serial in leaves.items():
        if _published(_saved_leaf(mesh, name, serial), (_CERT,)) is not None:  # else never changed
            for node in _nodes_with(mesh, [name]):
                checks.setdefault(node.id, []).append(_leaf_is(serial))
    for node_id, service in (data.get("nodes") or {}).items():
        serial = _leaf_serial(mesh, service)
        if serial is not None and any(n.id == node_id for n in mesh.nodes()):
            checks.setdefault(node_id, []).append(_leaf_is(serial))
    if original is not None:
        for node in mesh.nodes():
            checks.setdefault(node.id, []).append(_trust_is(_roots(original)))
    if checks:
        _await(mesh, {n: _all_of(fs) for n, fs in checks.items()}, "the restored certificates")
    # Whatever was (or was not) left to restore, every cluster names the material in force again: a run
    # killed between a publication and its reconnect left clusters naming material no longer served.
    mesh.reconnect()


def _widen_trust(mesh: LocalMesh, change: str, original: bytes) -> None:
    """Before the original leaves come back, make every sidecar trust both their root and what is served
    now: after a retired old root, the bundle is [new root] alone, and an old leaf would be refused."""
    current = _bundle(mesh)
    if current is None or current == original:
        return
    now = _roots(current)
    missing = [c for c in _roots(original) if all(_spki(c) != _spki(k) for k in now)]
    if not missing:
        return
    head = _ca_of(mesh, now[0])
    # A head re-signed for this publication, so /certs shows that this very bundle is loaded.
    first = head.reissued_root() if head is not None else now[0]
    _stage(mesh, change, "restore-overlap", lambda: _publish_bundle(mesh, [first, *now[1:], *missing]),
           "a bundle trusting both roots")


def _restore_pointers(mesh: LocalMesh, nodes: dict[str, str]) -> None:
    """Point each node's leaf secret back at its service's leaf in ``pki`` (what ``up`` wrote)."""
    if not nodes:
        return
    ca = LocalCA.load(_pki(mesh))
    want: dict[str, Callable[[ServedCert], bool]] = {}
    for node_id, service in nodes.items():
        try:
            mesh.node(node_id)
        except KeyError:
            continue
        path = mesh.sds_dir(node_id) / "leaf.json"
        paths = ca.paths(service)
        doc = ec.secret_files(paths.cert, paths.key, ca.trust_paths().ca_cert)["leaf.json"]
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()) == doc:
                continue
        _write_json(path, doc)
        serial = _leaf_serial(mesh, service)
        if serial is not None:
            want[node_id] = _leaf_is(serial)
    if want:
        log_stage(mesh, {"change": "restore", "stage": "restore-pointers", "event": "start"})
        start = time.perf_counter()
        _await(mesh, want, "their own leaf again")
        mesh.reconnect()
        log_stage(mesh, {"change": "restore", "stage": "restore-pointers", "event": "confirmed",
                    "ms": round((time.perf_counter() - start) * 1000, 1), "envoys": len(want)})


# ------------------------------------------------------------------------------------------- probes
def _client_material(mesh: LocalMesh, kind: ProbeKind) -> tuple[Path, Path] | None:
    """(cert, key) files of the probe client for ``kind`` (None for plaintext), issued afresh each time:
    the wrong-identity one must come from the CA in force *now*."""
    if kind == "plaintext":
        return None
    directory = _mkdirs(_certs(mesh) / "probes")
    if kind == "untrusted":
        ca = LocalCA.create_rogue(_mkdirs(_certs(mesh)) / "untrusted", mesh_trust_domain(mesh))
        info = ca.issue_leaf("probe", into=directory / "untrusted")
    else:
        info = current_ca(mesh).issue_leaf("probe", into=directory / "wrong-identity", identity=WRONG_IDENTITY)
    return info.cert_path, info.key_path


_NOT_TLS = ("WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL",
            "HTTP_REQUEST", "wrong version number")


def _one_probe(port: int, material: tuple[Path, Path] | None, timeout_s: float = 2.0) -> tuple[ProbeOutcome, str]:
    """(outcome, detail) of one connection: a request for the app's health page, in plaintext or over TLS
    with the given client certificate. The server's own certificate is not checked: the question is
    whether *it* lets *us* in. (The health page answers without calling anyone: an accepted probe adds
    one 200 to the instance's inbound counters and nothing else.)"""
    request = b"GET /__harness/health HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    except TimeoutError:
        return "no-answer", f"the connection was not accepted within {timeout_s:g}s"
    except OSError as exc:
        return "unreachable", f"connect failed: {exc.strerror or exc}"
    with contextlib.ExitStack() as stack:
        sock: socket.socket = stack.enter_context(raw)
        if material is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.load_cert_chain(str(material[0]), str(material[1]))
            try:
                sock = stack.enter_context(ctx.wrap_socket(raw, server_hostname="probe"))
            except TimeoutError:
                return "no-answer", f"no handshake within {timeout_s:g}s (a slow or frozen listener)"
            except ssl.SSLError as exc:
                text = str(exc)
                if any(mark in text for mark in _NOT_TLS):
                    return "no-tls", f"the listener does not speak TLS ({exc.reason or text})"
                return "refused", f"handshake refused: {exc.reason or text}"
            except OSError as exc:
                return "refused", f"connection closed during the handshake ({exc.strerror or exc})"
        try:
            sock.sendall(request)
            answer = sock.recv(64)
        except TimeoutError:
            return "no-answer", f"no answer within {timeout_s:g}s (a slow or frozen instance: it may have let us in)"
        except ssl.SSLError as exc:
            return "refused", f"refused after the handshake: {exc.reason or exc}"
        except OSError as exc:
            return "refused", f"connection closed without an answer ({exc.strerror or exc})"
    if answer.startswith(b"HTTP/"):
        return "accepted", "answered " + answer.split(b"\r\n", 1)[0].decode(errors="replace")
    if answer[:1] == b"\x15":
        return "refused", "answered with a TLS alert"
    return "refused", "closed the connection without an answer" if not answer else "answered something else"


_REFUSAL_STAT = {"untrusted": "ssl.fail_verify_error", "wrong-identity": "ssl.fail_verify_san",
                 "plaintext": "ssl.connection_error"}
"""The inbound listener's counter that a refusal of each bad peer raises (reference/envoy-probe.md §5)."""


def _refusals(mesh: LocalMesh, node: EnvoyNode) -> dict[str, float] | None:
    """The node's inbound TLS refusal counters, summed per stat; None when its admin does not answer."""
    try:
        stats = mesh.admin_stats(node, r"^listener\..*\.ssl\.(fail_verify_error|fail_verify_san|connection_error)$")
    except MeshError:
        return None
    out: dict[str, float] = {}
    for name, value in stats.items():
        stat = name[name.find(".ssl.") + 1:]
        with contextlib.suppress(ValueError):
            out[stat] = out.get(stat, 0.0) + float(value)
    return out


def probe(mesh: LocalMesh, service: str) -> list[PeerProbe]:
    """Each bad peer against each instance of ``service``, at its inbound listener, with whether that
    instance's own refusal counter rose across the probe (read just before and after it)."""
    out: list[PeerProbe] = []
    instances = mesh.layout.of(service)
    if not instances:
        raise FaultError(f"no instance of {service} to probe")
    try:
        materials = {kind: _client_material(mesh, kind) for kind in PROBE_KINDS}
        for inst in instances:
            node = mesh.node(inst.id)
            for kind in PROBE_KINDS:
                before = _refusals(mesh, node)
                outcome, detail = _one_probe(inst.inbound_port, materials[kind])
                after = _refusals(mesh, node)
                stat = _REFUSAL_STAT[kind]
                counted = (None if before is None or after is None
                           else after.get(stat, 0.0) > before.get(stat, 0.0))
                out.append(PeerProbe(service, inst.id, kind, outcome, detail, counted))
    except (OSError, ValueError, KeyError) as exc:  # ssl.SSLError is an OSError
        raise MeshError(f"the bad-peer probes of {service} could not be made: {exc}") from None
    return out
