"""The demo mesh's memory: PSS summed over every process the mesh started.

Why PSS (proportional set size) and not RSS: the mesh runs seven Envoys from one binary and six Python
apps from one interpreter, so most of their pages are shared. RSS counts a shared page once per process
and would add up to several times what the machine actually gives the mesh; PSS charges each process its
share of a shared page, so the sum is the mesh's real footprint.

Why the driver's process list and not "whatever appeared under this process": the driver records each
process it starts (with its start time, so a recycled PID is never taken for it) and reports the live
ones in ``status()``; the Probe's threads, a Locust run or the bench's own bare Envoys are then never
counted by accident. Each recorded process is counted with its descendants, since an Envoy runs under a
small keeper shell whose PID is the one recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psutil

__all__ = ["MIB", "mesh_pids", "mesh_pss_mib", "tree_pss_mib"]

MIB = 1 << 20


def mesh_pids(status: dict[str, Any]) -> list[int]:
    """The PIDs a driver's ``status()`` reports as its own and alive."""
    return [int(p["pid"]) for p in status.get("processes", []) if p.get("alive")]


def tree_pss_mib(pids: Iterable[int]) -> float:
    """PSS in MiB summed over ``pids`` and all their descendants, each process once.

    A process that exits between listing and reading is skipped (it no longer holds memory); one that
    cannot be read (AccessDenied) raises: a sum that silently left a process out would flatter the mesh.
    """
    procs: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in tree:
            procs.setdefault(proc.pid, proc)
    total = 0
    for proc in procs.values():
        try:
            total += proc.memory_full_info().pss
        except psutil.NoSuchProcess:
            continue
    return total / MIB


def mesh_pss_mib(mesh: Any) -> float:
    """The running mesh's PSS in MiB, from the processes its driver reports (see the module's docstring)."""
    pids = mesh_pids(mesh.status())
    if not pids:
        raise RuntimeError("the driver reports no running process of the mesh")
    return tree_pss_mib(pids)
