"""Which Toxiproxy server the local mesh should run: a real one when there is one, else the embedded one.

The real server is preferred because it is the reference; the embedded one exists because no registry
the project reaches ships it. ``MESH_HARNESS_TOXIPROXY`` overrides the choice: ``embedded`` forces the
embedded server, a path names a real ``toxiproxy-server`` binary.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from harness._errors import InputError
from harness.install import find

__all__ = ["ENV_VAR", "toxiproxy_server_command"]

ENV_VAR = "MESH_HARNESS_TOXIPROXY"
BINARY = "toxiproxy-server"


def _real_binary() -> str | None:
    choice = os.environ.get(ENV_VAR, "").strip()
    if choice == "embedded":
        return None
    if choice:
        path = Path(choice).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise InputError(f"{ENV_VAR}={choice}: not an executable file; set it to `embedded`, to the path "
                             f"of a {BINARY}, or unset it")
        return str(path)
    on_path = shutil.which(BINARY)
    if on_path:
        return on_path
    cached = find("toxiproxy")
    return str(cached) if cached else None


def toxiproxy_server_command(host: str = "127.0.0.1", port: int = 8474) -> list[str] | None:
    """The argv that starts a real Toxiproxy server on ``host:port``, or None to use the embedded one.

    Looks at ``$MESH_HARNESS_TOXIPROXY``, then a ``toxiproxy-server`` on PATH, then the build that
    ``mesh-harness install toxiproxy`` left in the cache.
    """
    binary = _real_binary()
    if binary is None:
        return None
    return [binary, "-host", host, "-port", str(port)]
