"""Istio's own CustomResourceDefinitions, for the tests that check objects against them or install them into
a real API server. Never copied into the repository (../shared/DESIGN.md): read from the source of the
pinned istiod in the Go module cache (``mesh-harness install istiod`` downloads it; the exact schemas that
istiod was built with), else from ../shared/reference/crds; skipped when neither is there."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.install import ISTIO_VERSION

REPO = Path(__file__).resolve().parents[1]
KINDS = frozenset({"DestinationRule", "EnvoyFilter", "Gateway", "ServiceEntry", "Sidecar", "VirtualService",
                   "WorkloadEntry", "PeerAuthentication"})
"""The kinds the istio driver writes or reads."""


@functools.cache
def _source() -> Path | None:
    go = shutil.which("go")
    if go is not None:
        try:
            cache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, timeout=30,
                                   check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            cache = ""
        pinned = Path(cache) / f"istio.io/istio@{ISTIO_VERSION}" / "manifests/charts/base/files/crd-all.gen.yaml"
        if cache and pinned.is_file():
            return pinned
    shared = REPO.parent / "shared" / "reference" / "crds" / "istio-crds.gen.yaml"
    return shared if shared.is_file() else None


def crds() -> list[dict[str, Any]]:
    """The CRDs of :data:`KINDS`, storage version only; the test is skipped when Istio's file is nowhere."""
    source = _source()
    if source is None:
        pytest.skip("Istio's CRDs are not here: run mesh-harness install istiod (it downloads Istio's source into "
                    "the Go module cache), or keep ../shared/reference/crds beside the repository")
    return _load(str(source))


@functools.cache
def _load(source: str) -> list[dict[str, Any]]:
    out = []
    for crd in yaml.safe_load_all(Path(source).read_text()):
        if crd and crd["spec"]["names"]["kind"] in KINDS:
            crd["spec"]["versions"] = [v for v in crd["spec"]["versions"] if v.get("storage")]
            out.append(crd)
    return out


def crd_file(directory: Path) -> Path:
    """:func:`crds` written to ``directory`` as one YAML file (what an API server's installer reads)."""
    path = directory / "istio-crds.yaml"
    if not path.exists():
        os.makedirs(directory, exist_ok=True)
        path.write_text(yaml.safe_dump_all(crds(), sort_keys=False))
    return path
