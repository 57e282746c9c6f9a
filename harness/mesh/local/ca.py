"""Local certificate authority for the sidecars' mTLS, with SPIFFE identities.

Why it exists: the local mesh must exercise the same mTLS failure modes as a real mesh
(expired, rotated, untrusted or wrongly-named certificates) without any external PKI. Envoy
sidecars are fed by *file-based SDS*, so what matters is not only the certificates but how
they land on disk: Envoy's ``watched_directory`` reloads when something is moved into the
directory, and it must never observe a half-written file or a certificate paired with the
wrong key. We therefore publish exactly like Kubernetes' atomic writer (as measured in the
Envoy probe)::

    tls.crt  -> ..data/tls.crt
    tls.key  -> ..data/tls.key
    ..data   -> ..v1
    ..v1/tls.crt, ..v1/tls.key

and rotate by writing ``..v2/`` completely, then ``symlink(..v2, ..data_tmp)`` and
``rename(..data_tmp, ..data)``: one atomic rename switches certificate and key together.
The paths handed to Envoy (``tls.crt``/``tls.key``/the directory) never change.

Security posture, even though everything is throw-away test material: directories are
created 0700, private keys are created 0600 at ``open(2)`` time (never chmod-ed after the
content is written), every file is written to a temp name and renamed, and no function
returns or logs private key material.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "DATA_LINK",
    "LEAF_VALIDITY",
    "ROOT_VALIDITY",
    "LeafInfo",
    "LeafPaths",
    "LocalCA",
    "TrustPaths",
    "atomic_publish",
    "serial_hex",
]

#: Name of the symlink that selects the live version directory (Kubernetes convention).
DATA_LINK = "..data"
_DATA_TMP = "..data_tmp"
_VERSION_RE = re.compile(r"^\.\.v(\d+)$")
#: Leaf lifetime: short, like a mesh's workload certificates, so expiry faults are realistic.
LEAF_VALIDITY = dt.timedelta(hours=24)
#: Root lifetime: long enough never to expire during any run.
ROOT_VALIDITY = dt.timedelta(days=3650)
#: Clock-skew allowance: certificates are valid from slightly in the past.
_BACKDATE = dt.timedelta(minutes=5)
#: Kubernetes-ish service names only: keeps SANs valid and ``leaf/<service>`` inside the CA dir.
_SERVICE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TRUST_DOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9._]{0,253}[a-z0-9])?$")
_DIR_MODE = 0o700
_KEY_MODE = 0o600
_CERT_MODE = 0o644
_META_FILE = "ca.json"
_ROOT_KEY = "root.key"
_ROOT_CERT = "root.crt"
_TRUST_FILE = "ca.crt"
_LEAF_CERT = "tls.crt"
_LEAF_KEY = "tls.key"


@dataclass(frozen=True, slots=True)
class LeafPaths:
    """The stable paths an Envoy SDS secret should reference for one service.

    They stay the same across rotations; only what ``..data`` points at changes.
    """

    cert: Path
    key: Path
    watched_directory: Path


@dataclass(frozen=True, slots=True)
class TrustPaths:
    """The stable paths of the trust bundle for an SDS ``validation_context`` secret."""

    ca_cert: Path
    watched_directory: Path


@dataclass(frozen=True, slots=True)
class LeafInfo:
    """What was issued, for assertions (e.g. compare ``serial_hex`` with Envoy's ``/certs``).

    Deliberately carries paths only, never key material, so it is safe to log or report.
    """

    service: str
    serial_hex: str
    not_after: dt.datetime
    directory: Path
    cert_path: Path
    key_path: Path
    spiffe_id: str
    not_before: dt.datetime
    version: int


def serial_hex(cert_or_serial: x509.Certificate | int) -> str:
    """Format a serial number exactly like Envoy's admin ``/certs`` does.

    Envoy uses BoringSSL's ``BN_bn2hex`` lower-cased: whole bytes, no leading zero bytes, no
    colons. (Plain ``format(n, "x")`` differs when the top byte is below 0x10.)
    """
    serial = cert_or_serial.serial_number if isinstance(cert_or_serial, x509.Certificate) else cert_or_serial
    if serial < 0:
        raise ValueError("negative serial numbers are not valid in X.509")
    if serial == 0:
        return "0"
    return serial.to_bytes((serial.bit_length() + 7) // 8, "big").hex()


def _new_serial() -> int:
    """A random positive 20-byte serial whose top byte is >= 0x10.

    20 bytes is the RFC 5280 maximum; forcing the top nibble non-zero makes every serial
    render as exactly 40 hex digits in every tool, which keeps string comparisons honest.
    """
    raw = bytearray(secrets.token_bytes(20))
    raw[0] = 0x10 + raw[0] % 0x70  # 0x10..0x7f: positive and a non-zero leading nibble
    return int.from_bytes(raw, "big")


def _mkdir_private(path: Path) -> None:
    """Create ``path`` 0700 if missing (mode given at mkdir time, not chmod-ed afterwards)."""
    try:
        os.mkdir(path, _DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a temp file created with ``mode``, fsync it, rename it over ``path``.

    Readers (Envoy, tests) therefore see either the old or the new complete file. The
    permission is set by ``os.open`` so a key is never readable by others, not even briefly.
    """
    tmp = path.parent / f".{path.name}.tmp-{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _replace_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically (temp symlink + rename), whatever it was before."""
    tmp = link.parent / f".{link.name}.lnk-{secrets.token_hex(6)}"
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _versions(directory: Path) -> list[int]:
    """Existing ``..vN`` version numbers in ``directory``, ascending."""
    found: list[int] = []
    for entry in os.scandir(directory):
        match = _VERSION_RE.match(entry.name)
        if match and entry.is_dir(follow_symlinks=False):
            found.append(int(match.group(1)))
    return sorted(found)


def atomic_publish(directory: Path, files: Mapping[str, tuple[bytes, int]]) -> int:
    """Publish a new complete set of ``files`` ({name: (content, mode)}) in the ``..data`` layout.

    Why this shape: Envoy (and kubelet-style consumers) must switch from one complete set to
    the next with a single atomic event. The new version directory is fully written first,
    then ``..data_tmp -> ..vN`` is renamed over ``..data`` (the only step a watcher reacts
    to). The per-file ``name -> ..data/name`` links are created once and never change.
    Versions older than the previous one are removed; the previous one is kept so a reader
    that resolved ``..data`` just before the swap can still open its files.

    Returns the new version number (1 for the first publication).
    """
    for name in files:
        if not name or "/" in name or name.startswith(".."):
            raise ValueError(f"invalid file name for atomic publication: {name!r}")
    _mkdir_private(directory)
    existing = _versions(directory)
    version = (existing[-1] + 1) if existing else 1
    version_dir = directory / f"..v{version}"
    os.mkdir(version_dir, _DIR_MODE)
    for name, (content, mode) in files.items():
        _write_atomic(version_dir / name, content, mode)
    tmp_link = directory / _DATA_TMP
    if os.path.lexists(tmp_link):  # left over from an interrupted publication
        tmp_link.unlink()
    os.symlink(version_dir.name, tmp_link)
    os.replace(tmp_link, directory / DATA_LINK)
    for name in files:
        link = directory / name
        target = f"{DATA_LINK}/{name}"
        if not (link.is_symlink() and os.readlink(link) == target):
            _replace_symlink(link, target)
    for old in existing:
        if old < version - 1:
            shutil.rmtree(directory / f"..v{old}", ignore_errors=True)
    return version


def _pem(cert: x509.Certificate) -> bytes:
    """PEM of a certificate: the format Envoy's SDS ``filename`` sources expect."""
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM: Envoy cannot use a passphrase here; 0600 perms protect it instead."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _check_service(service: str) -> None:
    """Refuse names that would be invalid DNS SANs or escape ``leaf/`` on disk."""
    if not _SERVICE_RE.match(service):
        raise ValueError(f"service name must be a lower-case DNS label, got {service!r}")


class LocalCA:
    """A self-contained root CA in a directory, issuing SPIFFE leaf certificates for sidecars.

    Layout under ``directory`` (all directories 0700)::

        ca/root.key (0600), ca/root.crt, ca/ca.json      the root and its metadata
        trust/ca.crt -> ..data/ca.crt                     trust bundle (..data layout)
        leaf/<service>/tls.crt, tls.key -> ..data/...     per-service leaves (..data layout)

    Use :meth:`create` (idempotent) or :meth:`load`; :meth:`create_rogue` gives a CA nobody
    trusts, for the untrusted-certificate fault. Methods are safe to call from several
    threads of one process; several processes must not share one CA directory for writing.
    """

    def __init__(
        self,
        directory: Path,
        trust_domain: str,
        key: ec.EllipticCurvePrivateKey,
        cert: x509.Certificate,
        *,
        rogue: bool,
    ) -> None:
        """Wrap already-loaded material; prefer :meth:`create`/:meth:`load`, which validate it."""
        self._directory = directory
        self._trust_domain = trust_domain
        self._key = key
        self._cert = cert
        self._rogue = rogue
        self._lock = threading.Lock()

    # -- construction --------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, trust_domain: str = "harness.local", *, rogue: bool = False) -> LocalCA:
        """Create a CA in ``directory``, or reuse the one already there (idempotent).

        Reuse matters because sidecars keep trusting the existing root across harness
        restarts; a silently regenerated root would break every running Envoy. Raises
        ``ValueError`` if an existing CA has a different trust domain or rogue flag.
        """
        directory = Path(directory)
        if not _TRUST_DOMAIN_RE.match(trust_domain):
            raise ValueError(f"invalid SPIFFE trust domain {trust_domain!r}")
        if (directory / "ca" / _ROOT_KEY).exists():
            ca = cls.load(directory)
            if ca.trust_domain != trust_domain or ca.is_rogue != rogue:
                raise ValueError(
                    f"{directory} already holds a CA for {ca.trust_domain!r} (rogue={ca.is_rogue}), "
                    f"not {trust_domain!r} (rogue={rogue})"
                )
            return ca
        directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        ca_dir = directory / "ca"
        _mkdir_private(ca_dir)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = cls._make_root(key, trust_domain, rogue=rogue)
        meta = {"trust_domain": trust_domain, "rogue": rogue, "format": 1}
        _write_atomic(ca_dir / _META_FILE, (json.dumps(meta, indent=2) + "\n").encode(), _CERT_MODE)
        _write_atomic(ca_dir / _ROOT_CERT, _pem(cert), _CERT_MODE)
        _write_atomic(ca_dir / _ROOT_KEY, _key_pem(key), _KEY_MODE)  # last: marks the CA complete
        _mkdir_private(directory / "leaf")
        ca = cls(directory, trust_domain, key, cert, rogue=rogue)
        ca.publish_trust_bundle()
        return ca

    @classmethod
    def create_rogue(cls, directory: Path, trust_domain: str = "harness.local") -> LocalCA:
        """Create (or reuse) a second, *untrusted* CA for the ``cert-untrusted`` fault.

        Same trust domain and SPIFFE IDs as the real CA, so the only thing wrong with its
        leaves is the signer: peers must reject them with a verification error. Its root has
        a distinct subject, so the failure is "unknown issuer", not a confusing signature
        mismatch. ``directory`` must differ from the real CA's.
        """
        return cls.create(directory, trust_domain, rogue=True)

    @classmethod
    def load(cls, directory: Path) -> LocalCA:
        """Load an existing CA; raises ``FileNotFoundError`` if there is none.

        Checks that the key matches the certificate, so a half-replaced CA directory fails
        loudly here rather than as an obscure TLS error inside Envoy.
        """
        directory = Path(directory)
        ca_dir = directory / "ca"
        meta = json.loads((ca_dir / _META_FILE).read_text(encoding="utf-8"))
        cert = x509.load_pem_x509_certificate((ca_dir / _ROOT_CERT).read_bytes())
        key = serialization.load_pem_private_key((ca_dir / _ROOT_KEY).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_dir / _ROOT_KEY} is not an EC private key")
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
            raise ValueError(f"root key and certificate in {ca_dir} do not match")
        return cls(directory, str(meta["trust_domain"]), key, cert, rogue=bool(meta.get("rogue", False)))

    @staticmethod
    def _make_root(key: ec.EllipticCurvePrivateKey, trust_domain: str, *, rogue: bool) -> x509.Certificate:
        """Self-signed root: CA:true (path length 0: leaves only), keyCertSign, 10 years."""
        label = "ROGUE root CA" if rogue else "root CA"
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mesh-harness"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, trust_domain),
            # A random suffix keeps subjects unique across CAs (real, rogue, rotated roots).
            x509.NameAttribute(NameOID.COMMON_NAME, f"mesh-harness {label} {secrets.token_hex(4)}"),
        ])
        now = dt.datetime.now(dt.UTC)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(_new_serial())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + ROOT_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
            .sign(key, hashes.SHA256())
        )

    # -- identity and paths --------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """Root directory of this CA."""
        return self._directory

    @property
    def trust_domain(self) -> str:
        """SPIFFE trust domain of the identities this CA issues."""
        return self._trust_domain

    @property
    def is_rogue(self) -> bool:
        """True for the deliberately untrusted CA made by :meth:`create_rogue`."""
        return self._rogue

    @property
    def root_cert(self) -> x509.Certificate:
        """The root certificate (public), e.g. for an overlap bundle in another CA."""
        return self._cert

    def root_cert_pem(self) -> bytes:
        """The root certificate as PEM."""
        return _pem(self._cert)

    def reissued_root(self) -> x509.Certificate:
        """This root self-signed again: same subject and key, a new serial (public part only).

        Why: Envoy's admin ``/certs`` shows only the *first* root of a trust bundle, so two bundles that
        start with the same certificate cannot be told apart there. A bundle that starts with a fresh
        certificate of the root that matters (the new root when the old one is retired, say) makes each
        publication visible by its own serial, and verifies exactly the same leaves: they are found by
        issuer name and key identifier, which the two certificates share.
        """
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(self._cert.subject)
            .issuer_name(self._cert.subject)
            .public_key(self._key.public_key())
            .serial_number(_new_serial())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(self._cert.not_valid_after_utc)
        )
        for extension in self._cert.extensions:
            builder = builder.add_extension(extension.value, critical=extension.critical)
        return builder.sign(self._key, hashes.SHA256())

    def spiffe_id(self, service: str) -> str:
        """The SPIFFE ID a service's sidecar presents; what peers match SANs against."""
        _check_service(service)
        return f"spiffe://{self._trust_domain}/ns/default/sa/{service}"

    def paths(self, service: str) -> LeafPaths:
        """Stable paths for the service's SDS ``tls_certificate`` secret (valid before issuance)."""
        _check_service(service)
        leaf_dir = self._directory / "leaf" / service
        return LeafPaths(cert=leaf_dir / _LEAF_CERT, key=leaf_dir / _LEAF_KEY, watched_directory=leaf_dir)

    def trust_paths(self) -> TrustPaths:
        """Stable paths for the SDS ``validation_context`` secret (the trust bundle)."""
        trust_dir = self._directory / "trust"
        return TrustPaths(ca_cert=trust_dir / _TRUST_FILE, watched_directory=trust_dir)

    # -- issuance and publication --------------------------------------------------------

    def publish_trust_bundle(self, extra_roots: Sequence[x509.Certificate] = ()) -> int:
        """(Re)publish ``trust/ca.crt`` = this root + ``extra_roots``, atomically.

        Why: a CA rotation needs a window where peers trust both the old and the new root;
        publishing the overlap bundle (and later the new root alone) is one rename each,
        picked up by Envoy's watched directory. Returns the bundle version number.
        """
        bundle: list[x509.Certificate] = [self._cert]
        for cert in extra_roots:
            if cert not in bundle:
                bundle.append(cert)
        data = b"".join(_pem(c) for c in bundle)
        with self._lock:
            return atomic_publish(self._directory / "trust", {_TRUST_FILE: (data, _CERT_MODE)})

    def issue_leaf(
        self,
        service: str,
        *,
        validity: dt.timedelta = LEAF_VALIDITY,
        into: Path | None = None,
        identity: str | None = None,
    ) -> LeafInfo:
        """Issue a fresh key + leaf for ``service`` and publish it atomically (rotation).

        The leaf carries URI SAN ``spiffe_id(service)`` plus DNS SANs ``<service>`` and
        ``<service>.default.svc`` (usable as SNI), EKU serverAuth+clientAuth (one certificate
        serves both directions of a sidecar), and is valid from 5 minutes ago for ``validity``
        (a negative ``validity`` yields an already-expired certificate, for expiry faults).
        The first call publishes ``..v1``, later calls ``..v2``, ``..v3``, ...

        ``into`` publishes into another ``..data`` directory than this CA's own ``leaf/<service>``:
        a CA rotation signs with the new root but publishes where the sidecars already look, so
        the paths Envoy watches never change. ``identity`` replaces the URI SAN (a wrong-identity
        probe: trusted signer, an identity no peer accepts). Neither returns key material.
        """
        _check_service(service)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        not_before = now - _BACKDATE
        not_after = now + validity
        if not_after <= not_before:
            not_before = not_after - dt.timedelta(hours=1)
        issuer_ski = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self._trust_domain),
                x509.NameAttribute(NameOID.COMMON_NAME, service),
            ]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(_new_serial())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([
                    x509.UniformResourceIdentifier(identity or self.spiffe_id(service)),
                    x509.DNSName(service),
                    x509.DNSName(f"{service}.default.svc"),
                ]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        paths = self.paths(service)
        if into is not None:
            paths = LeafPaths(cert=into / _LEAF_CERT, key=into / _LEAF_KEY, watched_directory=into)
        with self._lock:
            _mkdir_private(self._directory / "leaf")
            version = atomic_publish(
                paths.watched_directory,
                {_LEAF_CERT: (_pem(cert), _CERT_MODE), _LEAF_KEY: (_key_pem(key), _KEY_MODE)},
            )
        return LeafInfo(
            service=service,
            serial_hex=serial_hex(cert),
            not_after=cert.not_valid_after_utc,
            directory=paths.watched_directory,
            cert_path=paths.cert,
            key_path=paths.key,
            spiffe_id=identity or self.spiffe_id(service),
            not_before=cert.not_valid_before_utc,
            version=version,
        )

    def current_leaf(self, service: str) -> x509.Certificate:
        """The leaf currently published for ``service`` (read through the stable path)."""
        return x509.load_pem_x509_certificate(self.paths(service).cert.read_bytes())

    def __repr__(self) -> str:
        """Identify the CA without ever including key material."""
        return (f"LocalCA(directory={str(self._directory)!r}, trust_domain={self._trust_domain!r}, "
                f"rogue={self._rogue})")
