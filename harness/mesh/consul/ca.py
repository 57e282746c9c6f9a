"""The Connect CA roots the harness gives Consul, so that a rotation can be undone exactly.

Consul's built-in CA provider (``consul``) takes a root from its configuration (``PrivateKey`` and
``RootCert``). ``up`` gives it one the harness made (``original``) before any service is registered, so no
leaf is ever issued by the agent's own start-up root; a ``cert-rotation`` of ``what: ca`` gives it a new one
(Consul cross-signs it with the old and re-issues every leaf), and its undo gives the original back, which
Consul makes the active root again (measured on 1.16.1: the rotated root stays in its list, inactive). A
root's key is written 0600 and never logged; it stays in the mesh's state directory.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["ORIGINAL", "ROTATED", "Root", "make_root"]

ORIGINAL = "original"
ROTATED = "rotated"
ROOT_VALIDITY = dt.timedelta(days=3650)


class Root:
    """One root's files: ``<name>.key`` (0600) and ``<name>.crt`` in ``directory``."""

    def __init__(self, directory: Path, name: str) -> None:
        self.key = directory / f"{name}.key"
        self.cert = directory / f"{name}.crt"

    def pem(self) -> tuple[str, str]:
        return self.key.read_text(), self.cert.read_text()


def make_root(directory: Path, name: str, trust_domain: str) -> Root:
    """A self-signed EC P-256 root for Consul's trust domain (URI SAN ``spiffe://<trust domain>``, as Consul
    makes its own), written atomically; an existing one of that name is kept (``up`` run again)."""
    root = Root(directory, name)
    if root.key.exists() and root.cert.exists():
        return root
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mesh-harness"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"mesh-harness Consul CA {name} "
                                                                 f"{secrets.token_hex(4)}")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + ROOT_VALIDITY)
            # No path length: a rotated root is cross-signed by the one before it, one CA more in the chain.
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]),
                           critical=False)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write(root.key, key_pem, 0o600)
    _write(root.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return root


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # a stale one would keep its own mode while the key is written into it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
