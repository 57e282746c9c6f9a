"""Certificate changes of the local mesh, on disk, with a stand-in for Envoy (no process is started).

The stand-in reads what each node's SDS files point at right now, as an Envoy that picks up every
``..data`` rename at once would serve it; a real Envoy's timing is the integration tests' business. What
is checked here is the material: what each stage publishes, that the originals are kept (keys 0600),
that the undo gives back exactly the bytes that were there, from any stage a run may have been killed in,
twice, and from a fresh driver object.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from localstate import env_fixture, state_doc, write

from harness._errors import ConfigRejected, FaultError
from harness.mesh.intents import CertChange
from harness.mesh.local import certs
from harness.mesh.local.ca import LocalCA, serial_hex
from harness.mesh.local.driver import EnvoyNode, LocalMesh
from harness.metrics.tls import ServedCert
from harness.model.environment import Environment
from harness.model.loader import Loaded

__all__ = ["env_fixture"]

LEAVES = ["productpage", "details", "reviews", "ratings", "gateway"]


def _target(sds: Path, name: str, key: str, field: str) -> Path:
    return Path(json.loads((sds / name).read_text())["resources"][0][key][field]["filename"])


def envoy_like(mesh: LocalMesh, node: EnvoyNode) -> ServedCert:
    """What an Envoy that reloads at once would show in ``/certs``: its leaf's serial, its bundle's first root."""
    sds = mesh.sds_dir(node.id)
    leaf = x509.load_pem_x509_certificate(_target(sds, "leaf.json", "tls_certificate", "certificate_chain")
                                          .read_bytes())
    roots = x509.load_pem_x509_certificates(_target(sds, "trust.json", "validation_context", "trusted_ca")
                                            .read_bytes())
    return ServedCert((serial_hex(leaf),), (serial_hex(roots[0]),))


@pytest.fixture(name="mesh")
def mesh_fixture(env: Loaded[Environment], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalMesh]:
    """A local mesh's state directory as ``up`` leaves it (state, CA, leaves, SDS files); nothing runs."""
    mesh = LocalMesh.for_environment(env.model, env.path, tmp_path / "state")
    mesh.state_dir.mkdir()
    write(mesh, state_doc(mesh))
    ca = LocalCA.create(mesh.state_dir / "pki")
    for name in LEAVES:
        ca.issue_leaf(name)
    mesh._write_all_configs(ca)
    monkeypatch.setattr(certs, "served", envoy_like)
    reconnects: list[str] = []
    monkeypatch.setattr(LocalMesh, "reconnect", lambda self: reconnects.append(certs.material_digest(self)))
    mesh.reconnects = reconnects  # type: ignore[attr-defined]
    yield mesh
    mesh.close()


def fresh(mesh: LocalMesh) -> LocalMesh:
    """What ``cleanup`` has after a crash: a new driver object on the same state directory."""
    return LocalMesh.for_environment(mesh.env, mesh.env_path, mesh.state_dir)


def material(mesh: LocalMesh) -> dict[str, bytes]:
    """Every published file the sidecars read, by path: what an exact undo must give back byte for byte."""
    pki = mesh.state_dir / "pki"
    out = {f"leaf/{n}/{f}": (pki / "leaf" / n / f).read_bytes() for n in LEAVES for f in ("tls.crt", "tls.key")}
    out["trust"] = (pki / "trust" / "ca.crt").read_bytes()
    for node in mesh.nodes():
        out[f"sds/{node.id}"] = (mesh.sds_dir(node.id) / "leaf.json").read_bytes()
    return out


def run(mesh: LocalMesh, intent: CertChange) -> dict[str, Any]:
    """Prepare (JSON round trip, as the journal keeps it), apply; return the undo."""
    prepared = mesh.prepare(intent)
    undo: dict[str, Any] = json.loads(json.dumps(prepared.undo))
    json.dumps(prepared.do)
    mesh.apply(prepared)
    return undo


def served(mesh: LocalMesh) -> dict[str, ServedCert]:
    return mesh.served_certificates()


def reconnects(mesh: LocalMesh) -> list[str]:
    """The material digest at each reconnect the change asked for (the fixture records them)."""
    out: list[str] = mesh.reconnects  # type: ignore[attr-defined]
    return out


# ------------------------------------------------------------------------------------------- reconnects
def test_every_stage_reconnects_and_the_undo_names_the_original_material_again(mesh: LocalMesh) -> None:
    """Each confirmed stage re-creates the clusters for the material now in force (so new connections
    handshake with it); after the undo the digest is the original one, so every cluster is as it was."""
    original = certs.material_digest(mesh)
    undo = run(mesh, CertChange((), "ca"))
    during = reconnects(mesh)
    assert len(during) == 3, "overlap, leaves, retire: one reconnect each"
    assert len(set(during)) == 3, "each stage is new material"
    assert original not in during
    mesh.undo(undo)
    assert certs.material_digest(mesh) == original
    assert reconnects(mesh)[-1] == original


def test_the_clusters_carry_the_material_digest(mesh: LocalMesh) -> None:
    """An mTLS cluster names the material in force; a cluster rendered after a rotation is a new cluster."""
    node = mesh.node("ratings-v1-0")  # the fixture's one instance (it calls details)
    before = mesh._render(node, mesh.sds_dir(node.id), mesh.tls_material(), ads=True)[0]
    run(mesh, CertChange(("details",), "leaf"))
    after = mesh._render(node, mesh.sds_dir(node.id), mesh.tls_material(), ads=True)[0]
    tagged = [c for c in before if "transport_socket" in c]
    assert tagged
    assert all(c["metadata"]["filter_metadata"]["harness"]["tls_material"] == certs.material_digest(mesh)
               for c in after if "transport_socket" in c)
    assert [c for c in before if "transport_socket" in c] != [c for c in after if "transport_socket" in c]


# ------------------------------------------------------------------------------------------- leaf
def test_prepare_names_the_material_in_force_and_touches_nothing(mesh: LocalMesh) -> None:
    before = material(mesh)
    prepared = mesh.prepare(CertChange(("reviews",), "leaf"))
    serial = serial_hex(LocalCA.load(mesh.state_dir / "pki").current_leaf("reviews"))
    assert prepared.undo == {"op": "certs-restore", "nodes": {}, "leaves": {"reviews": serial}, "trust": None}
    assert "reviews" in prepared.description
    assert "..data rename" in prepared.description
    assert not (mesh.state_dir / "certs").exists()
    assert material(mesh) == before


def test_a_leaf_rotation_is_undone_to_the_byte(mesh: LocalMesh) -> None:
    before, shown = material(mesh), served(mesh)
    undo = run(mesh, CertChange(("ratings",), "leaf"))
    after = served(mesh)
    assert after["ratings-v1-0"].leaf != shown["ratings-v1-0"].leaf
    assert after["gateway"] == shown["gateway"]  # not a target
    kept = mesh.state_dir / "certs" / "saved" / "leaf" / "ratings" / shown["ratings-v1-0"].leaf[0]
    assert stat.S_IMODE(os.stat(kept / "tls.key").st_mode) == 0o600
    mesh.undo(undo)
    assert material(mesh) == before
    assert served(mesh) == shown
    mesh.undo(undo)  # again: nothing changes
    other = fresh(mesh)
    other.undo(undo)
    other.close()
    assert material(mesh) == before


def test_a_change_prepared_without_a_mesh_is_refused(env: Loaded[Environment], tmp_path: Path) -> None:
    """plan prepares without a mesh (serials null); applying that is refused, and its undo is harmless."""
    bare = LocalMesh.for_environment(env.model, env.path, tmp_path / "bare")
    prepared = bare.prepare(CertChange((), "leaf"))
    assert set(prepared.undo["leaves"]) == set(LEAVES)
    assert set(prepared.undo["leaves"].values()) == {None}
    bare.close()


def test_a_rotation_refuses_material_changed_since_it_was_prepared(mesh: LocalMesh) -> None:
    prepared = mesh.prepare(CertChange(("details",), "leaf"))
    LocalCA.load(mesh.state_dir / "pki").issue_leaf("details")
    with pytest.raises(FaultError, match="changed since the change was prepared"):
        mesh.apply(prepared)


def test_an_unknown_target_is_refused(mesh: LocalMesh) -> None:
    with pytest.raises(FaultError, match="no service 'nope'"):
        mesh.prepare(CertChange(("nope",), "leaf"))


# ------------------------------------------------------------------------------------------- ca
def test_a_root_rotation_goes_through_the_overlap_and_is_undone_to_the_byte(mesh: LocalMesh) -> None:
    before, shown = material(mesh), served(mesh)
    prepared = mesh.prepare(CertChange((), "ca", hold_s=0.0))
    assert len(prepared.stages) == 3
    assert prepared.stages[0].startswith("overlap")
    undo = json.loads(json.dumps(prepared.undo))
    mesh.apply(prepared)
    bundle = x509.load_pem_x509_certificates((mesh.state_dir / "pki" / "trust" / "ca.crt").read_bytes())
    assert len(bundle) == 1  # the old root is retired
    new_root = bundle[0]
    old_root = LocalCA.load(mesh.state_dir / "pki").root_cert
    assert new_root.public_key() != old_root.public_key()
    for name in LEAVES:
        leaf = x509.load_pem_x509_certificate((mesh.state_dir / "pki" / "leaf" / name / "tls.crt").read_bytes())
        leaf.verify_directly_issued_by(new_root)  # raises if the new root did not sign it
    now = served(mesh)
    assert all(now[n].leaf != shown[n].leaf and now[n].trust != shown[n].trust for n in shown)
    log = [(e["stage"], e["event"]) for e in certs.stage_log(mesh)]
    assert log == [("overlap", "start"), ("overlap", "confirmed"), ("leaves", "start"), ("leaves", "confirmed"),
                   ("retire", "start"), ("retire", "confirmed")]
    mesh.undo(undo)
    assert material(mesh) == before
    assert served(mesh) == shown
    stages = [e["stage"] for e in certs.stage_log(mesh) if e["event"] == "confirmed"][3:]
    assert stages == ["restore-overlap", "restore-leaves", "restore-trust"]
    fresh(mesh).undo(undo)
    assert material(mesh) == before


@pytest.mark.parametrize("killed_in", ["the leaves of the new root", "the new root alone"])
def test_a_root_rotation_stopped_half_way_is_undone(mesh: LocalMesh, monkeypatch: pytest.MonkeyPatch,
                                                    killed_in: str) -> None:
    """A stage that never shows (or a run killed there) leaves material the undo still gives back exactly."""
    before = material(mesh)
    real: Callable[..., None] = certs._await

    def stuck(mesh_: LocalMesh, want: dict[str, Any], what: str, timeout_s: float = 0.0) -> None:
        if what == killed_in:
            raise ConfigRejected(f"{what} never showed")
        real(mesh_, want, what)

    monkeypatch.setattr(certs, "_await", stuck)
    prepared = mesh.prepare(CertChange((), "ca"))
    with pytest.raises(ConfigRejected):
        mesh.apply(prepared)
    monkeypatch.setattr(certs, "_await", real)
    assert material(mesh) != before
    fresh(mesh).undo(json.loads(json.dumps(prepared.undo)))
    assert material(mesh) == before


def test_after_a_root_rotation_leaves_come_from_the_new_root(mesh: LocalMesh) -> None:
    """A leaf rotation in force after a root rotation signs with the root that heads the bundle."""
    ca_undo = run(mesh, CertChange((), "ca"))
    leaf_undo = run(mesh, CertChange(("reviews",), "leaf"))
    root = x509.load_pem_x509_certificates((mesh.state_dir / "pki" / "trust" / "ca.crt").read_bytes())[0]
    leaf = x509.load_pem_x509_certificate((mesh.state_dir / "pki" / "leaf" / "reviews" / "tls.crt").read_bytes())
    leaf.verify_directly_issued_by(root)
    before_leaf = leaf_undo["leaves"]["reviews"]
    mesh.undo(leaf_undo)
    assert certs._leaf_serial(mesh, "reviews") == before_leaf
    mesh.undo(ca_undo)
    assert certs.current_ca(mesh).root_cert == LocalCA.load(mesh.state_dir / "pki").root_cert


# ------------------------------------------------------------------------------------------- untrusted
def test_an_untrusted_leaf_is_given_to_the_target_only_and_taken_back(mesh: LocalMesh) -> None:
    before, shown = material(mesh), served(mesh)
    undo = run(mesh, CertChange(("ratings",), "untrusted"))
    pointed = _target(mesh.sds_dir("ratings-v1-0"), "leaf.json", "tls_certificate", "certificate_chain")
    assert pointed.is_relative_to(mesh.state_dir / "certs" / "untrusted")
    leaf = x509.load_pem_x509_certificate(pointed.read_bytes())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://harness.local/ns/default/sa/ratings"]
    now = served(mesh)
    assert now["ratings-v1-0"] != shown["ratings-v1-0"]
    assert now["gateway"] == shown["gateway"]
    mesh.undo(undo)
    assert material(mesh) == before
    assert served(mesh) == shown
    fresh(mesh).undo(undo)
    assert material(mesh) == before


def test_every_private_key_is_0600(mesh: LocalMesh) -> None:
    run(mesh, CertChange((), "ca"))
    run(mesh, CertChange(("ratings",), "untrusted"))
    certs._client_material(mesh, "untrusted")
    certs._client_material(mesh, "wrong-identity")
    keys = [p for p in (mesh.state_dir / "certs").rglob("*") if p.is_file() and p.name.endswith(".key")]
    assert len(keys) > 8
    assert {oct(stat.S_IMODE(os.stat(p).st_mode)) for p in keys} == {"0o600"}


def test_the_wrong_identity_probe_is_trusted_but_named_outside_the_trust_domain(mesh: LocalMesh) -> None:
    cert_path, _ = certs._client_material(mesh, "wrong-identity") or (Path(), Path())
    leaf = x509.load_pem_x509_certificate(cert_path.read_bytes())
    leaf.verify_directly_issued_by(LocalCA.load(mesh.state_dir / "pki").root_cert)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [certs.WRONG_IDENTITY]


# ------------------------------------------------------------------------------------------- probes
def _server(answer: bytes | None) -> tuple[int, threading.Thread]:
    """A one-connection TCP server (a thread, no process) that answers ``answer``, or closes at once."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.recv(1024)
                if answer:
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


@pytest.mark.parametrize(("answer", "outcome"), [
    (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", "accepted"),
    (None, "refused"),
    (b"\x15\x03\x03\x00\x02\x02\x28", "refused"),
])
def test_a_plaintext_probe_tells_accepted_from_refused(answer: bytes | None, outcome: str) -> None:
    port, thread = _server(answer)
    assert certs._one_probe(port, None)[0] == outcome
    thread.join(5)


def test_a_probe_with_nothing_listening_is_unreachable() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    assert certs._one_probe(port, None)[0] == "unreachable"


def test_a_tls_probe_against_a_plaintext_listener_finds_no_tls(mesh: LocalMesh) -> None:
    """mtls: off: the listener answers a ClientHello with HTTP, so no certificate can even be presented."""
    port, thread = _server(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
    outcome, detail = certs._one_probe(port, certs._client_material(mesh, "untrusted"))
    assert outcome == "no-tls", detail
    thread.join(5)
