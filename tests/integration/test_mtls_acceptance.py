"""Acceptance, on a topology unlike the demo: certificate rotations and untrusted peers get the true verdict,
and each claim the mesh does not honour fails.

The truths, from the environments below (strict mTLS unless said):
* Re-issuing every leaf (every service's and the gateway's) under load drops nothing, and every sidecar
  serves a new serial by the window's end. Claiming that a rotation of cart replaced nothing fails.
* Rotating the root through an overlap bundle (new + old, then every leaf from the new root, then the old
  root retired) drops nothing either, and every sidecar serves a leaf of the new root.
* db's sidecars given a leaf from a CA nobody trusts: cart (a required call, no retries) refuses every
  handshake to db, so almost every client request fails; db's own listeners still refuse plaintext, an
  untrusted client certificate and a wrong identity. "Nothing failed" is false.
* catalog untrusted: frontend's call to it is optional, so clients see no failure.
* Under mtls: permissive the listeners accept plaintext by design: "plaintext is refused" fails, while an
  untrusted client certificate is still refused.
Afterwards each mesh serves exactly the certificates it started with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from meshtools import REPO, cli, mesh_processes

from harness.mesh import open_driver
from harness.mesh.base import CertificateView
from harness.metrics.tls import ServedCert
from harness.model.loader import load_environment

ENV = """\
apiVersion: harness/v1
kind: Environment
metadata: {name: shop}
spec:
  gateway: {service: frontend}
  services:
    - name: frontend
      calls:
        - {to: catalog, optional: true, timeout: 400ms}
        - {to: cart, timeout: 2s}
    - name: catalog
    - name: cart
      calls: [{to: db, timeout: 700ms}]
    - name: db
      versions: {v1: {replicas: 2}}
  mtls: {mode}
"""

SUITE = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: shop-mtls}
spec:
  environment: shop.yaml
  defaults:
    load: {users: 20, rate: 150}
    phases: {baseline: 1s, fault: 4s, recovery: 1s}
    confidence: 0.99
  experiments:
    - name: leaf-rotation
      faults: [{kind: cert-rotation, target: all, at: 1500ms}]
      expect: [{kind: mtls, window: fault, failed_requests: 0, rotated: true}]
    - name: cart-rotation-claimed-untouched
      faults: [{kind: cert-rotation, target: [cart]}]
      expect: [{kind: mtls, window: fault, rotated: false}]
    - name: root-rotation
      phases: {fault: 7s}
      faults: [{kind: cert-rotation, target: all, what: ca, at: 1s, hold: 1500ms}]
      expect: [{kind: mtls, window: fault, failed_requests: 0, rotated: true}]
    - name: untrusted-db
      faults: [{kind: cert-untrusted, target: {service: db}}]
      expect:
        - {kind: mtls, window: fault, rejects: [untrusted, plaintext, wrong-identity]}
        - {kind: slo, signal: success_rate, scope: client, window: fault, max: 0.05}
        - {kind: mtls, window: fault, failed_requests: 0}
    - name: untrusted-optional-catalog
      faults: [{kind: cert-untrusted, target: {service: catalog}}]
      expect: [{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.98}]
"""

TRUTH = {
    "leaf-rotation": ["pass"],
    "cart-rotation-claimed-untouched": ["fail"],
    "root-rotation": ["pass"],
    "untrusted-db": ["pass", "pass", "fail"],
    "untrusted-optional-catalog": ["pass"],
}

PERMISSIVE_SUITE = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: shop-permissive}
spec:
  environment: shop.yaml
  defaults:
    load: {users: 10, rate: 50}
    phases: {baseline: 1s, fault: 2s, recovery: 1s}
  experiments:
    - name: permissive-listeners
      expect:
        - {kind: mtls, window: fault, rejects: [plaintext]}
        - {kind: mtls, window: fault, rejects: [untrusted, wrong-identity]}
"""


def _certificates(env_file: Path, state: Path) -> dict[str, ServedCert]:
    """Every sidecar's served certificates (its admin /certs), through the driver a later command would open."""
    loaded = load_environment(env_file)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MESH_HARNESS_STATE", str(state))
        mesh = open_driver(loaded.model, loaded.path)
    try:
        assert isinstance(mesh, CertificateView)
        return mesh.served_certificates()
    finally:
        mesh.close()


def _run(tmp_path: Path, mode: str, suite_text: str,
         code: str | None = None) -> tuple[dict[str, list[dict[str, Any]]], Path]:
    env_file = tmp_path / "shop.yaml"
    env_file.write_text(ENV.replace("{mode}", mode))
    suite = tmp_path / "suite.yaml"
    suite.write_text(suite_text)
    results = tmp_path / "results.json"
    state = tmp_path / "state"
    up = cli("up", "--env", str(env_file), state=state)
    assert up.returncode == 0, up.stderr
    try:
        before = _certificates(env_file, state)
        if code is None:
            run = cli("run", str(suite), "--results", str(results), state=state, timeout=900)
        else:
            run = subprocess.run([sys.executable, "-c", code, "run", str(suite), "--results", str(results)],
                                 capture_output=True, text=True, cwd=REPO, timeout=900, check=False,
                                 env=dict(os.environ, MESH_HARNESS_STATE=str(state)))
        assert run.returncode in (0, 1), run.stderr
        after = _certificates(env_file, state)
        assert after == before, "every sidecar serves the certificates it started with"
    finally:
        down = cli("down", "--env", str(env_file), state=state)
    assert down.returncode == 0, down.stderr
    assert mesh_processes(state) == []
    data = json.loads(results.read_text())
    assert all(e["rollback"]["complete"] for e in data["experiments"])
    return {e["name"]: e["expectations"] for e in data["experiments"]}, state


def test_rotations_and_untrusted_peers_get_the_true_verdict(tmp_path: Path) -> None:
    """Every expectation's verdict is the truth computed from the topology; certificates are left as found."""
    got, _ = _run(tmp_path, "strict", SUITE)
    verdicts = {name: [x["verdict"] for x in exps] for name, exps in got.items()}
    assert verdicts == TRUTH, "\n".join(
        f"{name}: {[(x['verdict'], x['message']) for x in exps]}" for name, exps in got.items()
        if verdicts[name] != TRUTH[name])
    leaf = got["leaf-rotation"][0]
    assert leaf["details"]["failed_requests"]["client"][1] > 300, "a census of the whole window"
    root = got["root-rotation"][0]
    assert all(r["after"]["trust"] != r["before"]["trust"] for r in root["details"]["rotated"].values()), \
        "after a root rotation every sidecar trusts the new root"


NO_OVERLAP = """\
from harness.mesh.local import certs
publish = certs._publish_bundle
# A root rotation done wrong: every bundle it publishes is cut to its first root, so the "overlap" trusts
# the new root alone while every leaf still comes from the old one.
certs._publish_bundle = lambda mesh, roots: publish(mesh, roots[:1])
from harness.cli import main; main()
"""

BROKEN_SUITE = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: shop-broken-rotation}
spec:
  environment: shop.yaml
  defaults:
    load: {users: 20, rate: 150}
    phases: {baseline: 1s, fault: 5s, recovery: 1s}
  experiments:
    - name: root-rotation-without-overlap
      faults: [{kind: cert-rotation, target: all, what: ca, at: 1s, hold: 1s}]
      expect: [{kind: mtls, window: fault, failed_requests: 0, rotated: true}]
"""


def test_a_root_rotation_without_overlap_drops_requests_and_fails(tmp_path: Path) -> None:
    """The same mesh, its root rotated without the overlap bundle (the old root dropped before any leaf of
    the new one is served): handshakes fail until the new leaves are out, and the census catches it."""
    got, _ = _run(tmp_path, "strict", BROKEN_SUITE, code=NO_OVERLAP)
    [claim] = got["root-rotation-without-overlap"]
    assert claim["verdict"] == "fail", claim["message"]
    assert claim["details"]["failed_requests"]["failed"] > 0


def test_permissive_listeners_accept_plaintext_and_say_so(tmp_path: Path) -> None:
    """mtls: permissive lets the plaintext probe in (the claim that it is refused fails, saying why), while
    a client certificate nobody trusts, or a wrong identity, is still refused."""
    got, _ = _run(tmp_path, "permissive", PERMISSIVE_SUITE)
    plaintext, certificates = got["permissive-listeners"]
    assert plaintext["verdict"] == "fail", plaintext["message"]
    assert "permissive" in plaintext["message"]
    assert certificates["verdict"] == "pass", certificates["message"]
