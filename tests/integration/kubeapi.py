"""A real Kubernetes API server for integration tests: etcd and kube-apiserver, both on 127.0.0.1.

``KubeAPI(directory)`` starts etcd (a fresh data directory, ``--unsafe-no-fsync``) and the kube-apiserver
that ``mesh-harness install etcd`` / ``mesh-harness install kube-apiserver`` built, on free ports. Its PKI is
made here with ``cryptography``: a CA, the serving certificate (SANs 127.0.0.1, localhost and the in-cluster
names), the service-account key pair and a static token in ``system:masters``; a kubeconfig with the CA and
the token is written to ``directory/kubeconfig``. It is used as a context manager; on exit both servers are
stopped by their process groups (SIGTERM, then SIGKILL).

Requests go through plain httpx with the bearer token (``request``); ``install_crds`` applies the
CustomResourceDefinitions of a YAML file and waits until they are Established and served.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.install import find

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
MERGE_PATCH = "application/merge-patch+json"

ETCD_READY_S = 30.0
APISERVER_READY_S = 90.0
"""Cold starts measured 0.8 s (etcd) and 2 s (kube-apiserver); the bounds leave room for a loaded machine."""

SERVICE_CIDR = "10.96.0.0/16"
SERVING_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local")
SERVING_IPS = ("127.0.0.1", "10.96.0.1")


class KubeAPIError(RuntimeError):
    """The API server did not start, or answered a request with an error (the message has its words)."""


def binaries_or_skip() -> tuple[Path, Path]:
    """The installed etcd and kube-apiserver; skipped where either is missing, except in CI
    (``MESH_HARNESS_CI=1``), which installs them: there a missing one is a failure."""
    etcd, apiserver = find("etcd"), find("kube-apiserver")
    if etcd is not None and apiserver is not None:
        return etcd, apiserver
    missing = " and ".join(name for name, path in (("etcd", etcd), ("kube-apiserver", apiserver)) if path is None)
    reason = (f"{missing} not installed; build with: mesh-harness install etcd; mesh-harness install kube-apiserver "
              "(Go and the Go module proxy; about 1 and 5 minutes)")
    if os.environ.get("MESH_HARNESS_CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


# -- PKI ---------------------------------------------------------------------------------------------


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path


def _certificate(subject: str, public_key: ec.EllipticCurvePublicKey, issuer: x509.Name | None,
                 signer: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                              critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        builder = (builder
                   .add_extension(x509.KeyUsage(
                       digital_signature=True, key_cert_sign=False, crl_sign=False, content_commitment=False,
                       key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                       decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.DNSName(n) for n in SERVING_NAMES]
                       + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVING_IPS]), critical=False))
    return builder.sign(signer, hashes.SHA256())


def write_pki(directory: Path, token: str) -> dict[str, Path]:
    """A CA, a serving certificate signed by it, a service-account RSA key pair and the static token file,
    written 0600 (keys) / 0644 into ``directory``; returns the paths by role."""
    directory.mkdir(mode=0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("mesh-harness kube-api CA", ca_key.public_key(), None, ca_key, ca=True)
    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving = _certificate("kube-apiserver", serving_key.public_key(), ca.subject, ca_key, ca=False)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_pub = sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "ca": _write(directory / "ca.crt", ca.public_bytes(serialization.Encoding.PEM)),
        "cert": _write(directory / "apiserver.crt", serving.public_bytes(serialization.Encoding.PEM)),
        "key": _write(directory / "apiserver.key", _pem_key(serving_key), 0o600),
        "sa_key": _write(directory / "sa.key", _pem_key(sa_key), 0o600),
        "sa_pub": _write(directory / "sa.pub", sa_pub),
        # token,user,uid,"groups": the token authenticates as a cluster admin.
        "tokens": _write(directory / "tokens.csv", f'{token},mesh-harness,mesh-harness,"system:masters"\n'.encode(),
                         0o600),
    }


# -- processes ---------------------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (all held open until all are chosen)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a process group of its own, its output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM to the process group of ``proc``, SIGKILL if it is still there after ``grace_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _wait_ready(what: str, proc: subprocess.Popen[bytes], log: Path, ready: Callable[[], bool],
                timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            raise KubeAPIError(f"{what} exited ({proc.returncode}) before it was ready; {log}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise KubeAPIError(f"{what} not ready after {timeout_s:.0f} s; {log}:\n{_tail(log)}")
        time.sleep(0.05)


def _answers(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path, timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


# -- the API server ----------------------------------------------------------------------------------


class KubeAPI:
    """etcd plus kube-apiserver in ``directory`` (logs, data, PKI, kubeconfig); a context manager."""

    def __init__(self, directory: Path, *, etcd: Path | None = None, apiserver: Path | None = None) -> None:
        if etcd is None or apiserver is None:
            etcd, apiserver = binaries_or_skip()
        self.directory = directory
        self.etcd_binary = etcd
        self.apiserver_binary = apiserver
        self.token = secrets.token_urlsafe(32)
        self.port, self.etcd_port, self.peer_port = free_ports(3)
        self.url = f"https://127.0.0.1:{self.port}"
        self.etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        self.kubeconfig = directory / "kubeconfig"
        self.ca_file = directory / "pki" / "ca.crt"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ready_s: dict[str, float] = {}
        """Seconds each server took to become ready (``etcd``, ``kube-apiserver``)."""
        self._client: httpx.Client | None = None

    # -- lifecycle

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Start etcd, then the kube-apiserver; return when ``/readyz`` answers ok; write the kubeconfig."""
        self.directory.mkdir(parents=True, exist_ok=True)
        pki = write_pki(self.directory / "pki", self.token)
        self._start_etcd()
        self._start_apiserver(pki)
        self.kubeconfig.write_text(yaml.safe_dump(self.kubeconfig_dict(), sort_keys=False))

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [str(self.etcd_binary), "--name", "kube-api", "--data-dir", str(self.directory / "etcd-data"),
                "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"kube-api={peer}", "--unsafe-no-fsync",
                "--quota-backend-bytes", str(2 * 1024**3)]
        log = self.directory / "etcd.log"
        start = time.monotonic()
        self.processes["etcd"] = proc = _spawn(argv, log)
        with httpx.Client(base_url=self.etcd_url) as client:
            _wait_ready("etcd", proc, log, lambda: _answers(client, "/health"), ETCD_READY_S)
        self.ready_s["etcd"] = time.monotonic() - start

    def _start_apiserver(self, pki: dict[str, Path]) -> None:
        argv = [str(self.apiserver_binary),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
                f"--tls-cert-file={pki['cert']}", f"--tls-private-key-file={pki['key']}",
                f"--client-ca-file={pki['ca']}",
                f"--token-auth-file={pki['tokens']}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={pki['sa_pub']}",
                f"--service-account-signing-key-file={pki['sa_key']}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                "--disable-admission-plugins=ServiceAccount",
                # Without it, it keeps logging that 127.0.0.1 is refused as an endpoint of the kubernetes Service.
                "--endpoint-reconciler-type=none",
                "--v=1"]
        log = self.directory / "apiserver.log"
        start = time.monotonic()
        self.processes["kube-apiserver"] = proc = _spawn(argv, log)
        _wait_ready("kube-apiserver", proc, log, lambda: _answers(self.client, "/readyz"), APISERVER_READY_S)
        self.ready_s["kube-apiserver"] = time.monotonic() - start

    def stop(self) -> None:
        """Stop the kube-apiserver, then etcd (each by its process group); idempotent."""
        if self._client is not None:
            self._client.close()
            self._client = None
        for name in ("kube-apiserver", "etcd"):
            proc = self.processes.get(name)
            if proc is not None:
                _stop(proc)

    # -- access

    def kubeconfig_dict(self) -> dict[str, Any]:
        """A kubeconfig for this server: its CA and the admin token."""
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        return {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "kube-api", "cluster": {"server": self.url, "certificate-authority-data": ca}}],
            "users": [{"name": "mesh-harness", "user": {"token": self.token}}],
            "contexts": [{"name": "kube-api", "context": {"cluster": "kube-api", "user": "mesh-harness"}}],
            "current-context": "kube-api",
        }

    @property
    def client(self) -> httpx.Client:
        """An httpx client for the API: verifies the serving certificate against the CA, sends the token."""
        if self._client is None:
            context = ssl.create_default_context(cafile=str(self.ca_file))
            self._client = httpx.Client(base_url=self.url, verify=context, timeout=10.0,
                                        headers={"Authorization": f"Bearer {self.token}"})
        return self._client

    def request(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json",
                ) -> httpx.Response:
        """One request; ``body`` is sent as JSON with ``content_type`` (``MERGE_PATCH`` for a merge patch)."""
        if body is None:
            return self.client.request(method, path)
        return self.client.request(method, path, json=body, headers={"Content-Type": content_type})

    def call(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json",
             ) -> dict[str, Any]:
        """``request``, and its JSON body; KubeAPIError with the server's status and message otherwise."""
        response = self.request(method, path, body, content_type=content_type)
        if response.is_error:
            raise KubeAPIError(f"{method} {path}: {response.status_code} {_message(response)}")
        result: dict[str, Any] = response.json()
        return result

    def apply(self, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj`` in ``collection``, or replace the one of that name (at its current resourceVersion)."""
        response = self.request("POST", collection, obj)
        if response.status_code != 409:
            if response.is_error:
                raise KubeAPIError(f"POST {collection}: {response.status_code} {_message(response)}")
            created: dict[str, Any] = response.json()
            return created
        path = f"{collection}/{obj['metadata']['name']}"
        current = self.call("GET", path)
        replacement = {**obj, "metadata": {**obj["metadata"],
                                           "resourceVersion": current["metadata"]["resourceVersion"]}}
        return self.call("PUT", path, replacement)

    def create_namespace(self, name: str) -> None:
        """Create namespace ``name`` (one that exists already is fine)."""
        self.apply("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def install_crds(self, path: Path, timeout_s: float = 60.0) -> list[str]:
        """Apply every CustomResourceDefinition in the YAML file ``path``; return their names once all are
        Established and each served version lists (so objects of the new kinds can be created at once)."""
        crds = [doc for doc in yaml.safe_load_all(path.read_text())
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"]
        if not crds:
            raise KubeAPIError(f"{path}: no CustomResourceDefinition in it")
        for crd in crds:
            self.apply(CRDS, crd)
        deadline = time.monotonic() + timeout_s
        waiting = {crd["metadata"]["name"]: crd for crd in crds}
        while waiting:
            for name in list(waiting):
                if _established(self.call("GET", f"{CRDS}/{name}")):
                    del waiting[name]
            if waiting and time.monotonic() > deadline:
                raise KubeAPIError(f"CRDs not Established after {timeout_s:.0f} s: {', '.join(sorted(waiting))}")
            if waiting:
                time.sleep(0.05)
        for crd in crds:
            spec = crd["spec"]
            for version in (v["name"] for v in spec["versions"] if v.get("served")):
                listing = f"/apis/{spec['group']}/{version}/{spec['names']['plural']}"
                while not _answers(self.client, listing):
                    if time.monotonic() > deadline:
                        raise KubeAPIError(f"{listing} is not served {timeout_s:.0f} s after its CRD was applied")
                    time.sleep(0.05)
        return [crd["metadata"]["name"] for crd in crds]


def _established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def _message(response: httpx.Response) -> str:
    """The ``message`` of a Kubernetes Status body, else the body."""
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return response.text

