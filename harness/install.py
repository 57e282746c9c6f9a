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

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness._errors import InputError, MeshError

__all__ = ["COMPONENTS", "ISTIO_VERSION", "GoComponent", "InstallError", "SourcePatch", "binary_path", "cache_root",
           "component", "find", "install"]


ISTIO_VERSION = "v0.0.0-20260827124520-eed52ebb66ad"
"""istio/istio at master of 2026-08-27, the newest commit the Go module proxy serves here. Istio's own tags
(``1.28.0``) are not Go semantic versions, so the proxy knows its commits only as pseudo-versions."""


@dataclass(frozen=True)
class SourcePatch:
    """Replace ``old`` by ``new`` in one file of a module's source, and why. A patch whose ``old`` text is
    gone (fixed upstream in a newer pin) is skipped; one found more than once is an error."""

    file: str
    old: str
    new: str
    why: str


ISTIOD_NO_KUBE_PATCH = SourcePatch(
    file="pilot/pkg/serviceregistry/serviceentry/controller.go",
    old="\t\ts.inputs.Namespaces = multiclusterController.ConfigCluster().Namespaces()\n",
    new=("\t\tif multiclusterController != nil {\n"
         "\t\t\ts.inputs.Namespaces = multiclusterController.ConfigCluster().Namespaces()\n"
         "\t\t} else {\n"
         "\t\t\ts.inputs.Namespaces = krt.NewStaticCollection[*v1.Namespace](nil, nil, "
         "s.opts.WithName(\"inputs/Namespaces\")...)\n"
         "\t\t}\n"),
    why=("istiod without Kubernetes (--configDir, --registries=) has no multicluster controller (it is made only "
         "with a kube client, pilot/pkg/bootstrap/server.go initMulticluster), yet the ServiceEntry controller "
         "reads the namespaces of its config cluster unconditionally (pilot/pkg/serviceregistry/serviceentry/"
         "controller.go:224): a nil dereference at start-up. With no cluster there are no Namespace objects, "
         "so an empty collection is what the code would have seen."),
)
"""The one change mesh-harness makes to istiod: a nil check on its no-Kubernetes path. Nothing in the
translation of Istio objects into Envoy configuration is touched."""


@dataclass(frozen=True)
class GoComponent:
    """One pinned Go program: which package to ``go install``, at which version, under which name."""

    name: str
    package: str
    version: str
    binary: str
    summary: str
    patches: tuple[SourcePatch, ...] = ()
    """Edits to the module's source before building (then it is built from a copy, not ``go install``)."""

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
    "istiod": GoComponent(
        name="istiod",
        package="istio.io/istio/pilot/cmd/pilot-discovery",
        version=ISTIO_VERSION,
        binary="pilot-discovery",
        summary="Istio's control plane (istiod), run by `mesh: istio` with `control_plane: local`",
        patches=(ISTIOD_NO_KUBE_PATCH,),
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


def _module_of(item: GoComponent) -> str:
    """The module that holds ``item.package``: the longest prefix ``go mod download`` knows. Registered
    components name it in their package path; istio's is ``istio.io/istio``."""
    parts = item.package.split("/")
    return "/".join(parts[:2]) if parts[0].endswith(".io") else "/".join(parts[:3])


def _patched_build(item: GoComponent, gobin: Path, go: str) -> None:
    """Download the module's source, apply ``item.patches`` to a copy, ``go build`` the package from it."""
    module = _module_of(item)
    env = dict(os.environ, CGO_ENABLED="0")
    try:
        found = subprocess.run([go, "mod", "download", "-json", f"{module}@{item.version}"], env=env,
                               capture_output=True, text=True, check=False)
    except OSError as exc:
        raise InstallError(f"cannot run {go}: {exc}") from None
    try:
        source = Path(json.loads(found.stdout)["Dir"])
    except (ValueError, KeyError):
        said = (found.stderr or found.stdout)[-2000:]
        raise InstallError(f"`go mod download {module}@{item.version}` failed:\n{said}\n"
                           "It needs the Go module proxy (GOPROXY) to be reachable.") from None
    tree = gobin / "src"
    shutil.copytree(source, tree)
    for patch in item.patches:
        path = tree / patch.file
        path.chmod(0o644)
        text = path.read_text()
        if text.count(patch.old) > 1:
            raise InstallError(f"the patch to {patch.file} matches more than once in {module}@{item.version}")
        path.write_text(text.replace(patch.old, patch.new))
    package = "./" + item.package[len(module):].lstrip("/")
    result = subprocess.run([go, "build", "-trimpath", "-o", str(gobin / item.go_binary), package], cwd=tree,
                            env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise InstallError(f"`go build {package}` of {module}@{item.version} failed "
                           f"(exit {result.returncode}):\n{tail}")


def _default_builder(item: GoComponent, gobin: Path, go: str) -> None:
    (_patched_build if item.patches else _go_install)(item, gobin, go)


def install(name: str, *, go: str | None = None, builder: Builder = _default_builder) -> Path:
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
