"""The local CA: certificate content, on-disk layout and rotation (no processes; a real Envoy reloading a
rotation is in tests/integration/test_ca_rotation.py)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
from pathlib import Path

import pytest
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
