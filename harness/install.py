"""Real components that exist only as Go programs, built from the Go module proxy at pinned versions.

No registry the project can reach ships these programs as binaries (no Toxiproxy server in PyPI, npm
or Debian), but every machine has Go and the Go module proxy. ``install(name)`` runs ``go install
MODULE@VERSION`` into a cache outside the repository, keyed by version, and reuses an earlier build;
``find(name)`` only looks. ``mesh-harness install toxiproxy`` calls ``install``; the harness then
prefers the real program where it can (see ``harness.toxiproxy.toxiproxy_server_command``).

Cache layout: ``$XDG_CACHE_HOME/mesh-harness/bin/<name>/<version>/<binary>`` (``~/.cache`` when
``XDG_CACHE_HOME`` is unset). Nothing built is ever written inside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness._errors import InputError, MeshError

__all__ = ["COMPONENTS", "GoComponent", "InstallError", "binary_path", "cache_root", "component", "find",
           "install"]


@dataclass(frozen=True)
class GoComponent:
    """One pinned Go program: which package to ``go install``, at which version, under which name."""

    name: str
    package: str
    version: str
    binary: str
    summary: str

    @property
    def go_binary(self) -> str:
        """The file ``go install`` writes: the last element of the package path (``server``)."""
        return self.package.rstrip("/").rsplit("/", 1)[-1]

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"


COMPONENTS: Mapping[str, GoComponent] = {
    "toxiproxy": GoComponent(
        name="toxiproxy",
        package="github.com/Shopify/toxiproxy/v2/cmd/server",
        version="v2.12.0",
        binary="toxiproxy-server",
        summary="Shopify's Toxiproxy server, the reference the embedded Toxiproxy API is tested against",
    ),
}
"""Every component ``install`` knows, by name. v2.12.0 is the newest Toxiproxy the module proxy serves."""


class InstallError(MeshError):
    """A component could not be built: Go is missing, or ``go install`` failed (the message says why)."""


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/mesh-harness/bin``, else ``~/.cache/mesh-harness/bin``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mesh-harness" / "bin"


def component(name: str) -> GoComponent:
    """The registered component ``name``; an InputError naming the known ones otherwise."""
    found = COMPONENTS.get(name)
    if found is None:
        known = ", ".join(sorted(COMPONENTS))
        raise InputError(f"unknown component {name!r}; known components: {known}")
    return found


def binary_path(item: GoComponent) -> Path:
    """Where the build of ``item`` lives in the cache (whether or not it exists yet)."""
    return cache_root() / item.name / item.version / item.binary


def find(name: str) -> Path | None:
    """The cached build of component ``name``, or None if it has not been installed."""
    path = binary_path(component(name))
    return path if path.is_file() and os.access(path, os.X_OK) else None


Builder = Callable[[GoComponent, Path, str], None]


def _go_install(item: GoComponent, gobin: Path, go: str) -> None:
    """Run ``go install`` with ``GOBIN`` pointing into the cache; InstallError with Go's own words."""
    env = dict(os.environ, GOBIN=str(gobin), CGO_ENABLED="0")
    try:
        result = subprocess.run([go, "install", item.spec], env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise InstallError(f"cannot run {go}: {exc}") from None
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise InstallError(f"`go install {item.spec}` failed (exit {result.returncode}):\n{tail}\n"
                           "It needs the Go module proxy (GOPROXY) to be reachable.")


def install(name: str, *, go: str | None = None, builder: Builder = _go_install) -> Path:
    """Build component ``name`` into the cache, or reuse the build already there; returns the binary.

    The build goes to a temporary directory beside its final place and is renamed into it, so two
    concurrent installs never leave a half-written binary. ``go`` defaults to the ``go`` on PATH.
    """
    item = component(name)
    existing = find(name)
    if existing is not None:
        return existing
    go_exe = go or shutil.which("go")
    if go_exe is None:
        raise InstallError(f"building {item.name} needs Go (1.23 or newer) on PATH, and none was found; "
                           f"install Go, or put a `{item.binary}` on PATH instead")
    target = binary_path(item)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        builder(item, staging, go_exe)
        built = staging / item.go_binary
        if not built.is_file():
            raise InstallError(f"`go install {item.spec}` wrote no {item.go_binary} into {staging}")
        os.replace(built, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
