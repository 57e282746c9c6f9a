"""Where mesh-harness keeps what it writes: one state root for meshes, journals and crash reports."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["default_state_dir", "state_root"]


def state_root() -> Path:
    """``$MESH_HARNESS_STATE``, else ``$XDG_STATE_HOME/mesh-harness``, else ``~/.local/state/mesh-harness``.

    Tests and CI set ``MESH_HARNESS_STATE`` so that a run never meets a mesh of another run.
    """
    explicit = os.environ.get("MESH_HARNESS_STATE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mesh-harness"


def default_state_dir(env_path: Path, name: str) -> Path:
    """One state directory per environment file, so ``up`` and a later ``run`` find the same mesh."""
    digest = hashlib.sha1(str(env_path.resolve()).encode()).hexdigest()[:8]
    return state_root() / f"{name}-{digest}"
