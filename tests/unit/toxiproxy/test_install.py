"""harness.install: the registry of pinned Go components, the cache, wrapper modules, and its errors (no build
is run: builders and Go are faked)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness import install as install_mod
from harness._errors import InputError, MeshError
from harness.install import (
    COMPONENTS,
    KUBERNETES_STAGING_MODULES,
    RETRY_DELAYS,
    GoComponent,
    InstallError,
    WrapperModule,
    binary_path,
    cache_root,
    component,
    find,
    install,
)


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
    known = "consul, etcd, istiod, kube-apiserver, toxiproxy"
    with pytest.raises(InputError, match=f"unknown component 'nope'; known components: {known}"):
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


# -- components built through a wrapper module (etcd, kube-apiserver) ------------------------------


def test_etcd_and_kube_apiserver_are_pinned(cache: Path) -> None:
    """etcd v3.6.16 and the kube-apiserver of k8s.io/kubernetes v1.36.3 are registered, each built through a
    wrapper module into ``<cache>/<name>/<version>/<name>``."""
    etcd, apiserver = component("etcd"), component("kube-apiserver")
    assert etcd.spec == "go.etcd.io/etcd/server/v3@v3.6.16"
    assert apiserver.spec == "k8s.io/kubernetes/cmd/kube-apiserver@v1.36.3"
    assert (etcd.binary, etcd.go_binary) == ("etcd", "etcd")
    assert (apiserver.binary, apiserver.go_binary) == ("kube-apiserver", "kube-apiserver")
    assert etcd.wrapper is not None
    assert apiserver.wrapper is not None
    assert binary_path(etcd) == cache / "etcd" / "v3.6.16" / "etcd"
    assert binary_path(apiserver) == cache / "kube-apiserver" / "v1.36.3" / "kube-apiserver"
    assert etcd.how == ("go build of go.etcd.io/etcd/server/v3@v3.6.16 through the wrapper module "
                        "mesh-harness.local/etcd")


def test_etcd_wrapper_module() -> None:
    """etcd's wrapper requires only the etcd server module and calls upstream's ``etcdmain.Main``."""
    wrapper = component("etcd").wrapper
    assert wrapper is not None
    assert wrapper.go_mod() == ("module mesh-harness.local/etcd\n\ngo 1.26.0\n\n"
                                "require (\n\tgo.etcd.io/etcd/server/v3 v3.6.16\n)\n")
    assert "etcdmain.Main(os.Args)" in wrapper.main_go
    assert '"go.etcd.io/etcd/server/v3/etcdmain"' in wrapper.main_go


def test_kube_apiserver_wrapper_replaces_every_staging_module() -> None:
    """The kube-apiserver's go.mod requires k8s.io/kubernetes v1.36.3 and replaces each of its 32 staging
    modules (all but sample-cli-plugin, which the proxy refuses) with the published v0.36.3."""
    wrapper = component("kube-apiserver").wrapper
    assert wrapper is not None
    text = wrapper.go_mod()
    lines = [line.strip() for line in text.splitlines()]
    assert lines[:5] == ["module mesh-harness.local/kube-apiserver", "", "go 1.26.0", "", "godebug default=go1.26"]
    require = lines[lines.index("require (") + 1:lines.index(")")]
    assert require == ["k8s.io/kubernetes v1.36.3"]
    replace = lines[lines.index("replace (") + 1:-1]
    assert len(KUBERNETES_STAGING_MODULES) == len(set(KUBERNETES_STAGING_MODULES)) == 32
    assert replace == [f"k8s.io/{name} => k8s.io/{name} v0.36.3" for name in KUBERNETES_STAGING_MODULES]
    assert "k8s.io/sample-cli-plugin" not in text
    assert {"api", "apimachinery", "apiserver", "apiextensions-apiserver", "client-go", "component-base",
            "kube-aggregator"} <= set(KUBERNETES_STAGING_MODULES)
    assert "app.NewAPIServerCommand()" in wrapper.main_go
    assert "cli.Run(command)" in wrapper.main_go


def test_kube_apiserver_reports_its_version() -> None:
    """The ldflags set component-base's version variables, so ``/version`` says v1.36.3 (not v0.0.0-master)."""
    wrapper = component("kube-apiserver").wrapper
    assert wrapper is not None
    assert wrapper.ldflags == ("-s", "-w",
                               "-X k8s.io/component-base/version.gitVersion=v1.36.3",
                               "-X k8s.io/component-base/version.gitMajor=1",
                               "-X k8s.io/component-base/version.gitMinor=36",
                               "-X k8s.io/component-base/version.gitTreeState=clean")


def test_wrapper_component_installs_through_the_builder(cache: Path) -> None:
    """A wrapper component goes through the same staging-then-rename install, and is reused afterwards."""
    calls: list[str] = []
    path = install("kube-apiserver", go="/usr/bin/go", builder=_fake_build(calls))
    assert path == cache / "kube-apiserver" / "v1.36.3" / "kube-apiserver"
    assert find("kube-apiserver") == path
    assert install("kube-apiserver", go="/usr/bin/go", builder=_fake_build(calls)) == path
    assert calls == ["/usr/bin/go install k8s.io/kubernetes/cmd/kube-apiserver@v1.36.3"]
    assert [p.name for p in path.parent.iterdir()] == ["kube-apiserver"]


def test_wrapper_build_that_writes_nothing_is_an_error() -> None:
    """A wrapper build that exits 0 without the binary is reported with the binary's name, not cached."""
    with pytest.raises(InstallError, match="`go build` wrote no etcd"):
        install("etcd", go="go", builder=lambda item, gobin, go: None)
    assert find("etcd") is None


def _fake_go(runs: list[tuple[list[str], Path, dict[str, str]]], fail: str = "") -> Any:
    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        runs.append((argv, kwargs["cwd"], kwargs["env"]))
        if fail and fail in argv:
            return subprocess.CompletedProcess(argv, 1, "", "go: downloading x\n" + f"go: {fail} broke\n")
        if "build" in argv:
            Path(argv[argv.index("-o") + 1]).write_text("binary")
        return subprocess.CompletedProcess(argv, 0, "", "")
    return run


def test_wrapper_build_writes_the_module_then_tidies_and_builds(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    """The wrapper's go.mod and main.go are written into the staging directory, then ``go mod tidy`` and
    ``go build -trimpath -ldflags ... -o <staging>/kube-apiserver .`` run there, with cgo and go.work off."""
    runs: list[tuple[list[str], Path, dict[str, str]]] = []
    monkeypatch.setattr(install_mod.subprocess, "run", _fake_go(runs))
    item = component("kube-apiserver")
    assert item.wrapper is not None
    install_mod._wrapper_build(item, tmp_path, "go")
    tree = tmp_path / "src"
    assert (tree / "go.mod").read_text() == item.wrapper.go_mod()
    assert (tree / "main.go").read_text() == item.wrapper.main_go
    assert [argv for argv, _, _ in runs] == [
        ["go", "mod", "tidy"],
        ["go", "build", "-trimpath", "-ldflags", " ".join(item.wrapper.ldflags), "-o",
         str(tmp_path / "kube-apiserver"), "."],
    ]
    assert all(cwd == tree for _, cwd, _ in runs)
    assert all(env["CGO_ENABLED"] == "0" and env["GOWORK"] == "off" for _, _, env in runs)
    assert (tmp_path / "kube-apiserver").is_file()


def test_wrapper_tidy_failure_quotes_go(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A failing ``go mod tidy`` becomes an InstallError with Go's last lines and the GOPROXY hint; no build
    is attempted."""
    runs: list[tuple[list[str], Path, dict[str, str]]] = []
    monkeypatch.setattr(install_mod.subprocess, "run", _fake_go(runs, fail="tidy"))
    with pytest.raises(InstallError, match="go: tidy broke") as caught:
        install_mod._wrapper_build(component("etcd"), tmp_path, "go")
    assert "`go mod tidy` of the wrapper module for go.etcd.io/etcd/server/v3@v3.6.16 failed (exit 1)" in str(
        caught.value)
    assert "GOPROXY" in str(caught.value)
    assert len(runs) == 1


def test_wrapper_build_failure_quotes_go(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A failing ``go build`` of the wrapper becomes an InstallError with Go's last lines."""
    runs: list[tuple[list[str], Path, dict[str, str]]] = []
    monkeypatch.setattr(install_mod.subprocess, "run", _fake_go(runs, fail="build"))
    with pytest.raises(InstallError, match="go: build broke") as caught:
        install_mod._wrapper_build(component("etcd"), tmp_path, "go")
    assert "`go build` of the wrapper module for go.etcd.io/etcd/server/v3@v3.6.16 failed" in str(caught.value)
    assert runs[-1][0] == ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp_path / "etcd"), "."]


def test_default_builder_picks_the_way_to_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``go install`` for plain components, a patched copy for istiod, the wrapper for etcd/kube-apiserver."""
    used: list[str] = []
    for name in ("_go_install", "_patched_build", "_wrapper_build"):
        monkeypatch.setattr(install_mod, name, lambda item, gobin, go, name=name: used.append(f"{item.name}:{name}"))
    for name in ("toxiproxy", "istiod", "etcd", "kube-apiserver", "consul"):
        install_mod._default_builder(component(name), tmp_path, "go")
    assert used == ["toxiproxy:_go_install", "istiod:_patched_build", "etcd:_wrapper_build",
                    "kube-apiserver:_wrapper_build", "consul:_wrapper_build"]


def test_a_patched_build_is_keyed_by_its_patches(cache: Path) -> None:
    """istiod's cache directory names its patches' digest: a changed patch is a new build, not the old one."""
    import dataclasses

    from harness.install import SourcePatch

    item = component("istiod")
    path = binary_path(item)
    assert path.parent.name.startswith(f"{item.version}+patched-")
    other = dataclasses.replace(item, patches=(SourcePatch("f.go", "a", "b", "why"),))
    assert binary_path(other) != path
    assert binary_path(component("toxiproxy")).parent.name == "v2.12.0"


# -- consul: upstream's own main package through a wrapper without Go files ------------------------


CONSUL_GO_MOD = """\
module mesh-harness.local/consul

go 1.20

require (
\tgithub.com/hashicorp/consul v1.16.1
\tgithub.com/hashicorp/consul/api v1.24.0
\tgithub.com/hashicorp/consul/envoyextensions v0.4.1
\tgithub.com/hashicorp/consul/proto-public v0.4.1
\tgithub.com/hashicorp/consul/sdk v0.14.1
\tgithub.com/hashicorp/consul/troubleshoot v0.3.1
)

exclude (
\tgithub.com/hashicorp/go-msgpack v1.1.5
\tgithub.com/hashicorp/go-msgpack v1.1.6
)
"""


def test_consul_is_pinned_to_the_last_mpl_release(cache: Path) -> None:
    """Consul v1.16.1 (the last MPL-2.0 release; v1.17.0 on is BUSL-1.1) is built from its root package
    into ``<cache>/consul/v1.16.1/consul`` through the wrapper module mesh-harness.local/consul."""
    item = component("consul")
    assert item.spec == "github.com/hashicorp/consul@v1.16.1"
    assert (item.binary, item.go_binary) == ("consul", "consul")
    assert binary_path(item) == cache / "consul" / "v1.16.1" / "consul"
    assert item.how == ("go build of github.com/hashicorp/consul@v1.16.1 through the wrapper module "
                        "mesh-harness.local/consul")
    assert "`consul connect envoy`" in item.summary
    assert "`mesh: consul` with `control_plane: local`" in item.summary


def test_consul_wrapper_requires_the_submodules_and_repeats_the_excludes() -> None:
    """The go.mod requires Consul and the published submodules tagged with it (in place of upstream's
    ``=> ./api`` replaces), repeats upstream's go-msgpack excludes, and has no main.go: upstream's own
    main package is the build target."""
    wrapper = component("consul").wrapper
    assert wrapper is not None
    assert wrapper.go_mod() == CONSUL_GO_MOD
    assert (wrapper.main_go, wrapper.build_package) == ("", "github.com/hashicorp/consul")
    assert wrapper.replaces == ()


def test_consul_reports_its_commit() -> None:
    """The ldflags strip the binary and set Consul's version.GitCommit and BuildDate as its own build does,
    so ``consul version`` names the v1.16.1 commit (a plain ``go build`` leaves it empty)."""
    wrapper = component("consul").wrapper
    assert wrapper is not None
    assert wrapper.ldflags == (
        "-s", "-w",
        "-X github.com/hashicorp/consul/version.GitCommit=e0ab4d29fc4482fbdddd9811b2b4c4a0a38f38fc",
        "-X github.com/hashicorp/consul/version.BuildDate=2023-08-05T21:56:29Z",
    )


def test_wrapper_needs_exactly_one_way_to_build() -> None:
    """A wrapper with both a main.go and a build package, or neither, is refused when it is declared."""
    with pytest.raises(ValueError, match="exactly one of main_go and build_package"):
        WrapperModule(module="m", requires=(("a", "v1"),))
    with pytest.raises(ValueError, match="exactly one of main_go and build_package"):
        WrapperModule(module="m", requires=(("a", "v1"),), main_go="package main", build_package="a")


def test_build_package_wrapper_downloads_then_builds_upstreams_main(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    """With a build package, only go.mod is written (``go mod tidy`` would drop the requires of a module
    without Go files); ``go mod download`` then ``go build -mod=mod ... PACKAGE`` run, with cgo and go.work
    off and Go's checksum verification left as the caller had it."""
    runs: list[tuple[list[str], Path, dict[str, str]]] = []
    monkeypatch.setattr(install_mod.subprocess, "run", _fake_go(runs))
    monkeypatch.setattr(install_mod, "_pause", lambda seconds: pytest.fail("no retry was due"))
    item = component("consul")
    assert item.wrapper is not None
    install_mod._wrapper_build(item, tmp_path, "go")
    tree = tmp_path / "src"
    assert sorted(p.name for p in tree.iterdir()) == ["go.mod"]
    assert (tree / "go.mod").read_text() == CONSUL_GO_MOD
    assert [argv for argv, _, _ in runs] == [
        ["go", "mod", "download"],
        ["go", "build", "-mod=mod", "-trimpath", "-ldflags", " ".join(item.wrapper.ldflags), "-o",
         str(tmp_path / "consul"), "github.com/hashicorp/consul"],
    ]
    assert all(cwd == tree for _, cwd, _ in runs)
    for _, _, env in runs:
        assert (env["CGO_ENABLED"], env["GOWORK"]) == ("0", "off")
        for name in ("GOSUMDB", "GONOSUMDB", "GONOSUMCHECK", "GOINSECURE", "GOFLAGS"):
            assert env.get(name) == install_mod.os.environ.get(name), name
    assert (tmp_path / "consul").is_file()


def test_consul_installs_into_the_cache(cache: Path) -> None:
    """consul goes through the same staging-then-rename install as the other components."""
    calls: list[str] = []
    path = install("consul", go="/usr/bin/go", builder=_fake_build(calls))
    assert path == cache / "consul" / "v1.16.1" / "consul"
    assert find("consul") == path
    assert calls == ["/usr/bin/go install github.com/hashicorp/consul@v1.16.1"]


# -- retries of a Go step the proxy or its checksum database failed transiently ----------------------

SUMDB_404 = ("go: github.com/hashicorp/hcp-sdk-go@v0.55.0: verifying go.mod: github.com/hashicorp/hcp-sdk-go@"
             "v0.55.0/go.mod: reading https://sum.golang.org/lookup/github.com/hashicorp/hcp-sdk-go@v0.55.0: "
             "404 Not Found\n")
MISMATCH = ("go: example.com/m@v1.0.0: verifying go.mod: checksum mismatch\n\tdownloaded: h1:a=\n"
            "\tsum.golang.org: h1:b=\n\nSECURITY ERROR\nThis download does NOT match the one reported by the "
            "checksum server.\n")
"""Go's words for a go.mod whose hash the checksum database contradicts (cmd/go/internal/modfetch)."""


def _flaky_go(runs: list[list[str]], answers: list[tuple[int, str]]) -> Any:
    """A ``subprocess.run`` that answers each call with the next (exit code, stderr) of ``answers``."""
    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        runs.append(argv)
        code, stderr = answers[len(runs) - 1]
        if code == 0 and "build" in argv:
            Path(argv[argv.index("-o") + 1]).write_text("binary")
        return subprocess.CompletedProcess(argv, code, "", stderr)
    return run


def test_a_transient_checksum_404_is_retried(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A sum.golang.org lookup that answers 404 twice and then succeeds costs two waits, not the install."""
    runs: list[list[str]] = []
    waits: list[float] = []
    monkeypatch.setattr(install_mod.subprocess, "run", _flaky_go(runs, [(0, ""), (1, SUMDB_404), (1, SUMDB_404),
                                                                        (0, "")]))
    monkeypatch.setattr(install_mod, "_pause", waits.append)
    install_mod._wrapper_build(component("consul"), tmp_path, "go")
    assert [argv[1] for argv in runs] == ["mod", "build", "build", "build"]
    assert waits == list(RETRY_DELAYS[:2])
    assert (tmp_path / "consul").is_file()


@pytest.mark.parametrize("said", [
    "go: example.com/m@v1.0.0: reading https://proxy.golang.org/example.com/m/@v/v1.0.0.mod: 404 Not Found\n",
    "go: example.com/m@v1.0.0: verifying module: example.com/m@v1.0.0: Get \"https://sum.golang.org/lookup/"
    "example.com/m@v1.0.0\": dial tcp: i/o timeout\n",
])
def test_a_step_that_stays_unanswered_fails_after_four_attempts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                said: str) -> None:
    """A download that keeps failing transiently is tried 4 times in all, then fails with Go's words."""
    runs: list[list[str]] = []
    waits: list[float] = []
    monkeypatch.setattr(install_mod.subprocess, "run", _flaky_go(runs, [(1, said)] * 4))
    monkeypatch.setattr(install_mod, "_pause", waits.append)
    with pytest.raises(InstallError, match=re.escape("`go mod download` of the wrapper module for "
                       "github.com/hashicorp/consul@v1.16.1 failed after 4 attempts")) as caught:
        install_mod._wrapper_build(component("consul"), tmp_path, "go")
    assert said.strip() in str(caught.value)
    assert "GOPROXY" in str(caught.value)
    assert len(runs) == 4
    assert waits == list(RETRY_DELAYS) == [5.0, 15.0, 30.0]


@pytest.mark.parametrize("said", [MISMATCH, "./main.go:3:2: undefined: etcdmain.Nope\n"])
def test_a_checksum_mismatch_or_a_compile_error_is_not_retried(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                               said: str) -> None:
    """A checksum that does not match (an answer, and a security one) and a compile error fail at once."""
    runs: list[list[str]] = []
    monkeypatch.setattr(install_mod.subprocess, "run", _flaky_go(runs, [(0, ""), (1, said)]))
    monkeypatch.setattr(install_mod, "_pause", lambda seconds: pytest.fail("retried a permanent failure"))
    with pytest.raises(InstallError, match=r"`go build` of the wrapper module for \S+ failed \(exit 1\)"):
        install_mod._wrapper_build(component("etcd"), tmp_path, "go")
    assert len(runs) == 2


def test_tidy_of_a_main_go_wrapper_is_retried_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The retry is in every Go step of a wrapper build: etcd's ``go mod tidy`` survives one 404."""
    runs: list[list[str]] = []
    waits: list[float] = []
    monkeypatch.setattr(install_mod.subprocess, "run", _flaky_go(runs, [(1, SUMDB_404), (0, ""), (0, "")]))
    monkeypatch.setattr(install_mod, "_pause", waits.append)
    install_mod._wrapper_build(component("etcd"), tmp_path, "go")
    assert [argv[1:3] for argv in runs] == [["mod", "tidy"], ["mod", "tidy"], ["build", "-trimpath"]]
    assert waits == [5.0]
