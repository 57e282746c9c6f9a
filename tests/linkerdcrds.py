"""Linkerd's CustomResourceDefinitions (edge-26.8.3, the same as version-2.20), for the tests that install
them into a real API server. Linkerd's source is on no registry this project reaches, so they are read from
../shared/reference/linkerd/crds (never copied into the repository); skipped when that is not there."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RENDERED = REPO.parent / "shared" / "reference" / "linkerd" / "crds" / "rendered"
FILES = ("gateway.networking.k8s.io_httproutes", "gateway.networking.k8s.io_grpcroutes", "policy__httproute",
         "serviceprofile", "policy__server", "policy__authorization-policy", "policy__meshtls-authentication")
"""The CRDs the linkerd driver reads or writes: the Gateway API routes Linkerd bundles, its own routes,
ServiceProfiles, and the authorization kinds."""


def crd_file(directory: Path) -> Path:
    """The CRDs of :data:`FILES` in one YAML file in ``directory`` (what an API server's installer reads)."""
    if not RENDERED.is_dir():
        pytest.skip(f"Linkerd's CRDs are not here ({RENDERED}): keep ../shared/reference beside the repository")
    path = directory / "linkerd-crds.yaml"
    if not path.exists():
        texts = [(RENDERED / f"charts__linkerd-crds__templates__{name}.yaml").read_text() for name in FILES]
        path.write_text("\n---\n".join(texts))
    return path
