"""harness.install: the registry of pinned Go components, the cache, and its errors (no build is run)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness import install as install_mod
from harness._errors import InputError, MeshError
from harness.install import COMPONENTS, GoComponent, InstallError, binary_path, cache_root, component, find, install


@pytest.fixture(autouse=True)
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "mesh-harness" / "bin"


def _fake_build(calls: list[str]) -> install_mod.Builder:
    def build(item: GoComponent, gobin: Path, go: str) -> None:
        calls.append(f"{go} install {item.spec}")
        (gobin / item.go_binary).write_text("binary")
        (gobin / item.go_binary).chmod(0o755)
    return build


def test_toxiproxy_is_pinned() -> None:
    """Toxiproxy is registered at a pinned version, built from its cmd/server package."""
    item = component("toxiproxy")
    assert item.spec == "github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0"
    assert (item.binary, item.go_binary) == ("toxiproxy-server", "server")
    assert all(c.version.startswith("v") for c in COMPONENTS.values())


def test_unknown_component_is_an_input_error() -> None:
    """An unknown name is an InputError that lists the known ones."""
    with pytest.raises(InputError, match="unknown component 'nope'; known components: istiod, toxiproxy"):
        find("nope")


def test_cache_is_keyed_by_version(cache: Path) -> None:
    """The cache lives under XDG_CACHE_HOME, one directory per component and version."""
    assert cache_root() == cache
    assert binary_path(component("toxiproxy")) == cache / "toxiproxy" / "v2.12.0" / "toxiproxy-server"


def test_install_builds_once_then_reuses(cache: Path) -> None:
    """The first install builds into the cache; later ones find the build and do not rebuild."""
    calls: list[str] = []
    assert find("toxiproxy") is None
    path = install("toxiproxy", go="/usr/bin/go", builder=_fake_build(calls))
    assert path == cache / "toxiproxy" / "v2.12.0" / "toxiproxy-server"
    assert find("toxiproxy") == path
    assert install("toxiproxy", go="/usr/bin/go", builder=_fake_build(calls)) == path
    assert calls == ["/usr/bin/go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0"]
    assert [p.name for p in path.parent.iterdir()] == ["toxiproxy-server"]  # no staging left behind


def test_install_without_go_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Go on PATH, install fails with an InstallError (a MeshError) naming both ways out."""
    monkeypatch.setattr(install_mod.shutil, "which", lambda _name: None)
    with pytest.raises(InstallError, match="needs Go") as caught:
        install("toxiproxy")
    assert isinstance(caught.value, MeshError)
    assert "toxiproxy-server" in str(caught.value)


def test_failed_build_leaves_nothing(cache: Path) -> None:
    """A build that fails raises InstallError and leaves no partial binary or staging directory."""
    def broken(item: GoComponent, gobin: Path, go: str) -> None:
        raise InstallError("boom")

    with pytest.raises(InstallError, match="boom"):
        install("toxiproxy", go="go", builder=broken)
    assert find("toxiproxy") is None
    assert list((cache / "toxiproxy" / "v2.12.0").iterdir()) == []


def test_build_that_writes_nothing_is_an_error() -> None:
    """A ``go install`` that exits 0 without writing the binary is reported, not cached."""
    with pytest.raises(InstallError, match="wrote no server"):
        install("toxiproxy", go="go", builder=lambda item, gobin, go: None)


def test_go_install_failure_quotes_go(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A failing ``go install`` becomes an InstallError with Go's last lines and the GOPROXY hint."""
    seen: dict[str, Any] = {}

    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.update(argv=argv, env=kwargs["env"])
        return subprocess.CompletedProcess(argv, 1, "", "go: module lookup disabled\n")

    monkeypatch.setattr(install_mod.subprocess, "run", fake_run)
    with pytest.raises(InstallError, match="module lookup disabled") as caught:
        install_mod._go_install(component("toxiproxy"), tmp_path, "go")
    assert "GOPROXY" in str(caught.value)
    assert seen["argv"] == ["go", "install", "github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0"]
    assert seen["env"]["GOBIN"] == str(tmp_path)
    assert seen["env"]["CGO_ENABLED"] == "0"
