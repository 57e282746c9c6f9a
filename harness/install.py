"""Real components that exist only as Go programs, built from the Go module proxy at pinned versions.

No registry the project can reach ships these programs as binaries (no Toxiproxy server in PyPI, npm
or Debian), but every machine has Go and the Go module proxy. ``install(name)`` runs ``go install
MODULE@VERSION`` into a cache outside the repository, keyed by version, and reuses an earlier build;
``find(name)`` only looks. ``mesh-harness install toxiproxy`` calls ``install``; the harness then
prefers the real program where it can (see ``harness.toxiproxy.toxiproxy_server_command``).

Programs whose own go.mod has replace directives (etcd, k8s.io/kubernetes, Consul) are refused by
``go install``; they are built through a *wrapper module* (``WrapperModule``) the harness writes into the
staging directory: a go.mod that requires the pinned module (and replaces what upstream replaces with local
paths), then either a main.go with upstream's ``main`` (``go mod tidy`` and ``go build .``) or, when
upstream's main package can be built as it is, no Go file at all (``go mod download`` and ``go build
-mod=mod PACKAGE``).

Go steps of a wrapper build that fail because the module proxy or its checksum database answered
transiently (a ``404 Not Found`` that is a 200 a minute later, seen on sum.golang.org lookups) are run
again a few times (``RETRY_DELAYS``). Checksum verification is never turned off.

Cache layout: ``$XDG_CACHE_HOME/mesh-harness/bin/<name>/<version>/<binary>`` (``~/.cache`` when
``XDG_CACHE_HOME`` is unset). Nothing built is ever written inside the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness._errors import InputError, MeshError

__all__ = ["COMPONENTS", "CONSUL_SUBMODULES", "CONSUL_VERSION", "ETCD_VERSION", "ISTIO_VERSION",
           "KUBERNETES_STAGING_MODULES", "KUBERNETES_STAGING_VERSION", "KUBERNETES_VERSION", "RETRY_DELAYS",
           "GoComponent", "InstallError", "SourcePatch", "WrapperModule", "binary_path", "cache_root", "component",
           "find", "install"]


ISTIO_VERSION = "v0.0.0-20260827124520-eed52ebb66ad"
"""istio/istio at master of 2026-08-27 (its VERSION file: 1.31), the newest commit the Go module proxy serves
here. Istio's own tags (``1.28.0``) are not Go semantic versions, so the proxy knows its commits only as
pseudo-versions."""


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
class WrapperModule:
    """A main module the harness writes to build a program ``go install`` refuses: one whose go.mod has
    replace directives (``go install M@V`` then says "contains one or more replace directives").

    Its go.mod requires the pinned modules and repeats the replaces and excludes upstream needs (pointing
    at published modules instead of upstream's local paths). Then one of two builds:

    * ``main_go``: a main.go with the body of upstream's ``main`` (etcd, the kube-apiserver). ``go mod tidy``
      fills in the rest of go.mod, then ``go build -trimpath [-ldflags LDFLAGS] -o BINARY .``.
    * ``build_package``: no Go file; upstream's own main package is built unchanged (Consul), so there is
      no copy of upstream's ``main`` to keep in step. ``go mod tidy`` would
      drop every requirement of a module without Go files, so ``go mod download`` fetches the required
      modules and ``go build -mod=mod -trimpath [-ldflags LDFLAGS] -o BINARY PACKAGE`` adds what the
      package needs to go.mod and go.sum as it goes.

    Exactly one of the two is set.
    """

    module: str
    """The wrapper's own module path (``mesh-harness.local/etcd``); it is never published."""
    requires: tuple[tuple[str, str], ...]
    """``(module, version)`` pairs of the go.mod ``require`` block."""
    main_go: str = ""
    """The source of main.go: upstream's main package, importing the pinned module."""
    build_package: str = ""
    """Upstream's main package to build as it is (``github.com/hashicorp/consul``), instead of a main.go."""
    replaces: tuple[tuple[str, str], ...] = ()
    """``(module, version)`` pairs written as ``module => module version``."""
    excludes: tuple[tuple[str, str], ...] = ()
    """``(module, version)`` pairs of the go.mod ``exclude`` block: versions upstream forbids (an exclude
    applies only in the main module, so the wrapper must repeat upstream's or MVS may pick them)."""
    ldflags: tuple[str, ...] = ()
    """Linker flags (``-s``, ``-X pkg.var=value``), joined into one ``-ldflags`` argument."""
    godebug: str = ""
    """A go.mod ``godebug`` line (``default=go1.26``), as upstream's main module sets it; none if empty."""
    go: str = "1.26.0"
    """The go.mod ``go`` line. It also sets the GODEBUG defaults of the binary (those of that Go release)."""

    def __post_init__(self) -> None:
        if bool(self.main_go) == bool(self.build_package):
            raise ValueError(f"wrapper module {self.module}: set exactly one of main_go and build_package")

    def go_mod(self) -> str:
        """The text of the wrapper's go.mod, before ``go mod tidy`` (or ``go build -mod=mod``) adds to it."""
        lines = [f"module {self.module}", "", f"go {self.go}", ""]
        if self.godebug:
            lines += [f"godebug {self.godebug}", ""]
        lines += ["require (", *(f"\t{module} {version}" for module, version in self.requires), ")"]
        if self.replaces:
            lines += ["", "replace (", *(f"\t{module} => {module} {version}" for module, version in self.replaces),
                      ")"]
        if self.excludes:
            lines += ["", "exclude (", *(f"\t{module} {version}" for module, version in self.excludes), ")"]
        return "\n".join(lines) + "\n"


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
    wrapper: WrapperModule | None = None
    """The module to build through instead of ``go install``, for programs whose go.mod has replaces."""

    @property
    def go_binary(self) -> str:
        """The file the build writes: the last element of the package path (``server``) for ``go install``,
        ``binary`` for a wrapper module (its build names the output)."""
        if self.wrapper is not None:
            return self.binary
        return self.package.rstrip("/").rsplit("/", 1)[-1]

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def how(self) -> str:
        """How it is built, in a few words (``mesh-harness install`` prints it)."""
        if self.wrapper is not None:
            return f"go build of {self.spec} through the wrapper module {self.wrapper.module}"
        if self.patches:
            return f"go build of {self.spec} with {len(self.patches)} patch(es)"
        return f"go install {self.spec}"


ETCD_VERSION = "v3.6.16"
"""etcd, the store behind the kube-apiserver (k8s.io/kubernetes v1.36 builds against the v3.6 client)."""

ETCD_MAIN = """\
// Built by mesh-harness (harness/install.py): go.etcd.io/etcd/server/v3 has replace directives in its
// go.mod, so `go install go.etcd.io/etcd/server/v3@VERSION` refuses it. Same body as upstream's main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""

KUBERNETES_VERSION = "v1.36.3"
"""k8s.io/kubernetes for the kube-apiserver: v1.36 matches the k8s.io/* v0.36 modules the pinned istiod uses."""

KUBERNETES_STAGING_VERSION = "v0.36.3"
"""The published version of k8s.io/kubernetes' staging modules that goes with ``KUBERNETES_VERSION``."""

KUBERNETES_STAGING_MODULES = (
    "api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime", "client-go", "cloud-provider",
    "cluster-bootstrap", "code-generator", "component-base", "component-helpers", "controller-manager", "cri-api",
    "cri-client", "cri-streaming", "csi-translation-lib", "dynamic-resource-allocation", "endpointslice",
    "externaljwt", "kms", "kube-aggregator", "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubectl",
    "kubelet", "metrics", "mount-utils", "pod-security-admission", "sample-apiserver", "sample-controller",
    "streaming",
)
"""The modules k8s.io/kubernetes' go.mod replaces with ``./staging/src/k8s.io/<name>`` (under ``k8s.io/``), which
the wrapper replaces with the published ``KUBERNETES_STAGING_VERSION``. All of upstream's list but
sample-cli-plugin: the module proxy answers 403 for k8s.io/sample-cli-plugin@v0.36.3, and nothing the
kube-apiserver imports needs it."""

KUBE_APISERVER_MAIN = """\
// Built by mesh-harness (harness/install.py): k8s.io/kubernetes replaces its staging modules with local
// paths, so it cannot be `go install`ed; go.mod here replaces them with the published k8s.io/<name> modules.
// Same body as upstream's cmd/kube-apiserver/apiserver.go.
package main

import (
	"os"
	_ "time/tzdata" // for timeZone support in CronJob

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // load all the prometheus client-go plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
"""


def _kubernetes_version_ldflags(version: str) -> tuple[str, ...]:
    """``-X`` flags that make ``/version`` report ``version`` (a plain ``go build`` reports v0.0.0-master;
    clients such as istiod read it), as Kubernetes' own build (hack/lib/version.sh) sets them."""
    major, minor = version.removeprefix("v").split(".")[:2]
    package = "k8s.io/component-base/version"
    return (f"-X {package}.gitVersion={version}", f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}", f"-X {package}.gitTreeState=clean")


CONSUL_VERSION = "v1.16.1"
"""HashiCorp Consul v1.16.1 (commit ``CONSUL_COMMIT``), the last release under the Mozilla Public License 2.0
(the LICENSE in the module proxy's v1.16.1 zip). From v1.17.0 on, Consul and its submodules envoyextensions
and troubleshoot are under the Business Source License 1.1, which is not an open-source licence: no newer
Consul may be pinned here."""

CONSUL_COMMIT = "e0ab4d29fc4482fbdddd9811b2b4c4a0a38f38fc"
"""The commit of the v1.16.1 tag (the module proxy's v1.16.1.info, Origin.Hash)."""

CONSUL_BUILD_DATE = "2023-08-05T21:56:29Z"
"""The committer date of ``CONSUL_COMMIT`` in UTC (the module proxy's v1.16.1.info, Time): what Consul's own
build (build-support/functions/10-util.sh git_date) sets ``version.BuildDate`` to, stable across builds."""

CONSUL_SUBMODULES = (
    ("github.com/hashicorp/consul/api", "v1.24.0"),
    ("github.com/hashicorp/consul/envoyextensions", "v0.4.1"),
    ("github.com/hashicorp/consul/proto-public", "v0.4.1"),
    ("github.com/hashicorp/consul/sdk", "v0.14.1"),
    ("github.com/hashicorp/consul/troubleshoot", "v0.3.1"),
)
"""The published versions of the modules Consul's go.mod replaces with ``./api``, ``./sdk``, ...: the ones
tagged with v1.16.1 (all 2023-08-04, all MPL-2.0 at these versions). The wrapper requires them, so minimal
version selection picks them over the older versions upstream's go.mod names."""

CONSUL_EXCLUDES = (
    ("github.com/hashicorp/go-msgpack", "v1.1.5"),
    ("github.com/hashicorp/go-msgpack", "v1.1.6"),
)
"""Consul's own ``exclude`` block: go-msgpack v1.1.5 "has breaking changes and must be avoided", v1.1.6 is
the same code. Excludes only count in the main module, so the wrapper repeats them."""


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
    "etcd": GoComponent(
        name="etcd",
        package="go.etcd.io/etcd/server/v3",
        version=ETCD_VERSION,
        binary="etcd",
        summary="etcd, the store of the real kube-apiserver the Istio driver's cluster path is tested against",
        wrapper=WrapperModule(
            module="mesh-harness.local/etcd",
            main_go=ETCD_MAIN,
            requires=(("go.etcd.io/etcd/server/v3", ETCD_VERSION),),
            ldflags=("-s", "-w"),
        ),
    ),
    "kube-apiserver": GoComponent(
        name="kube-apiserver",
        package="k8s.io/kubernetes/cmd/kube-apiserver",
        version=KUBERNETES_VERSION,
        binary="kube-apiserver",
        summary="the real Kubernetes API server (on etcd), holding the Istio CRDs for istiod's cluster path",
        wrapper=WrapperModule(
            module="mesh-harness.local/kube-apiserver",
            main_go=KUBE_APISERVER_MAIN,
            requires=(("k8s.io/kubernetes", KUBERNETES_VERSION),),
            replaces=tuple((f"k8s.io/{name}", KUBERNETES_STAGING_VERSION) for name in KUBERNETES_STAGING_MODULES),
            ldflags=("-s", "-w", *_kubernetes_version_ldflags(KUBERNETES_VERSION)),
            godebug="default=go1.26",
        ),
    ),
    "consul": GoComponent(
        name="consul",
        package="github.com/hashicorp/consul",
        version=CONSUL_VERSION,
        binary="consul",
        summary="Consul (agent and `consul connect envoy`), run by `mesh: consul` with `control_plane: local`",
        wrapper=WrapperModule(
            module="mesh-harness.local/consul",
            build_package="github.com/hashicorp/consul",
            requires=(("github.com/hashicorp/consul", CONSUL_VERSION), *CONSUL_SUBMODULES),
            excludes=CONSUL_EXCLUDES,
            ldflags=("-s", "-w", f"-X github.com/hashicorp/consul/version.GitCommit={CONSUL_COMMIT}",
                     f"-X github.com/hashicorp/consul/version.BuildDate={CONSUL_BUILD_DATE}"),
            go="1.20",  # upstream's go line: the GODEBUG defaults Consul 1.16 was released with
        ),
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
    """Where the build of ``item`` lives in the cache (whether or not it exists yet). A patched build is
    keyed by its patches too (``VERSION+patched-<digest>``), so a changed patch is built anew."""
    return cache_root() / item.name / _cache_key(item) / item.binary


def _cache_key(item: GoComponent) -> str:
    if not item.patches:
        return item.version
    digest = hashlib.sha256("\0".join(f"{p.file}\0{p.old}\0{p.new}" for p in item.patches).encode()).hexdigest()
    return f"{item.version}+patched-{digest[:8]}"


def locate(env_var: str, program: str, name: str, error: type[MeshError], missing: str) -> str:
    """A program the harness runs: ``$<env_var>`` (which must name an executable), else ``program`` on PATH,
    else the build ``mesh-harness install <name>`` left in the cache; ``error(missing)`` when there is none."""
    chosen = os.environ.get(env_var)
    if chosen:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise error(f"{env_var}={chosen} is not an executable file")
        return chosen
    found = shutil.which(program) or find(name)
    if found is None:
        raise error(missing)
    return str(found)


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
    for directory, _, _ in os.walk(tree):  # the module cache is read-only; the copy must be removable
        os.chmod(directory, 0o755)
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


RETRY_DELAYS: tuple[float, ...] = (5.0, 15.0, 30.0)
"""Seconds to wait before the 2nd, 3rd and 4th attempt of a Go step that failed transiently. The checksum
database answered ``404 Not Found`` for lookups here (sum.golang.org/lookup/github.com/hashicorp/
hcp-sdk-go@v0.55.0, three times) and 200 a minute later: about 50 s in all covers such a spell, and a
build's packages already compiled are in Go's build cache, so a repeated ``go build`` only resumes."""

TRANSIENT_MARKERS = ("404 Not Found", "verifying module:", "verifying go.mod:")
"""Go's words for a module proxy or checksum database that did not answer as it should: an HTTP 404, or a
lookup in the checksum database that failed (``<module>@<version>: verifying go.mod: <error>``)."""

NEVER_RETRIED = ("checksum mismatch", "SECURITY ERROR")
"""A checksum that does not match is an answer, not a hiccup: it is reported at once, never retried."""


def _transient(output: str) -> bool:
    """Whether a failed Go command's output says the proxy or checksum database failed to answer, which a
    later attempt may not (a real checksum mismatch never is)."""
    return any(m in output for m in TRANSIENT_MARKERS) and not any(m in output for m in NEVER_RETRIED)


def _pause(seconds: float) -> None:
    """The wait between attempts (tests replace it)."""
    time.sleep(seconds)


def _run_go(argv: list[str], *, cwd: Path, env: dict[str, str], what: str, hint: str = "") -> None:
    """Run one Go command; InstallError with Go's own last lines (and ``hint``) when it fails.

    A failure whose output is transient (``_transient``) is tried again after each of ``RETRY_DELAYS``;
    Go's checksum verification stays on throughout (``env`` is the caller's, with no GOSUMDB/GONOSUMDB/
    GOFLAGS of ours)."""
    attempts = len(RETRY_DELAYS) + 1
    for attempt in range(1, attempts + 1):
        try:
            result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise InstallError(f"cannot run {argv[0]}: {exc}") from None
        if result.returncode == 0:
            return
        said = (result.stderr or "") + (result.stdout or "")
        if attempt < attempts and _transient(said):
            _pause(RETRY_DELAYS[attempt - 1])
            continue
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        tries = f" after {attempt} attempts" if attempt > 1 else ""
        raise InstallError(f"{what} failed{tries} (exit {result.returncode}):\n{tail}" + (f"\n{hint}" if hint else ""))


def _wrapper_build(item: GoComponent, gobin: Path, go: str) -> None:
    """Write ``item.wrapper`` into ``gobin/src`` and build the binary into ``gobin``: with a main.go, ``go mod
    tidy`` then ``go build .``; with a ``build_package``, go.mod alone, ``go mod download`` then ``go build
    -mod=mod PACKAGE`` (see ``WrapperModule``)."""
    wrapper = item.wrapper
    if wrapper is None:
        raise InstallError(f"{item.name} has no wrapper module to build")
    tree = gobin / "src"
    tree.mkdir()
    (tree / "go.mod").write_text(wrapper.go_mod())
    # GOWORK=off: a go.work above the cache must not pull the wrapper into someone's workspace.
    env = dict(os.environ, CGO_ENABLED="0", GOWORK="off")
    proxy_hint = "It needs the Go module proxy (GOPROXY) to be reachable."
    argv = [go, "build"]
    if wrapper.build_package:
        _run_go([go, "mod", "download"], cwd=tree, env=env,
                what=f"`go mod download` of the wrapper module for {item.spec}", hint=proxy_hint)
        argv += ["-mod=mod"]
        target, hint = wrapper.build_package, proxy_hint  # -mod=mod: this build still fetches modules
    else:
        (tree / "main.go").write_text(wrapper.main_go)
        _run_go([go, "mod", "tidy"], cwd=tree, env=env, what=f"`go mod tidy` of the wrapper module for {item.spec}",
                hint=proxy_hint)
        target, hint = ".", ""
    argv += ["-trimpath"]
    if wrapper.ldflags:
        argv += ["-ldflags", " ".join(wrapper.ldflags)]
    argv += ["-o", str(gobin / item.binary), target]
    _run_go(argv, cwd=tree, env=env, what=f"`go build` of the wrapper module for {item.spec}", hint=hint)


def _default_builder(item: GoComponent, gobin: Path, go: str) -> None:
    if item.wrapper is not None:
        _wrapper_build(item, gobin, go)
    else:
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
        raise InstallError(f"building {item.name} needs Go (1.26 or newer) on PATH, and none was found; "
                           f"install Go, or put a `{item.binary}` on PATH instead")
    target = binary_path(item)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        builder(item, staging, go_exe)
        built = staging / item.go_binary
        if not built.is_file():
            command = "go build" if item.wrapper is not None else f"go install {item.spec}"
            raise InstallError(f"`{command}` wrote no {item.go_binary} into {staging}")
        os.replace(built, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
