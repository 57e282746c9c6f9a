"""Drivers for tests: a fake mesh that runs nothing, and a wrapper that makes any driver fail on cue.

Like httpx's ``MockTransport`` and structlog's ``capture_logs``, these are public so that users'
tests (and ours) can exercise the runner, the journal, ``plan`` and ``cleanup`` without a mesh, and so
that no test hook ever lives in production code::

    from harness.testing import FakeMesh, failing_driver, registered_driver

    with registered_driver("local", failing_driver("harness.mesh.local.driver:LocalMesh", fail_on_apply=1)):
        ...  # every environment with mesh: local now gets a driver whose first change fails half-way
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

from harness._errors import FaultError, MeshError
from harness.mesh import DRIVERS
from harness.mesh.base import GATEWAY, Capabilities, MeshDriver, Prepared, Topology
from harness.mesh.intents import HttpFault, Intent, PolicyOverride, SplitChange
from harness.mesh.policy import ResolvedPolicy, merge_policy, resolve
from harness.metrics.snapshot import NodeInfo, Snapshot
from harness.model.environment import EdgePolicy, Environment

__all__ = ["FakeMesh", "FakeSource", "failing_driver", "registered_driver"]


class FakeSource:
    """A metric source that returns snapshots a test scripted (or empty ones)."""

    def __init__(self, nodes: dict[str, NodeInfo], snapshots: list[Snapshot] | None = None) -> None:
        self.node_info = nodes
        self.snapshots = list(snapshots or [])
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    def scrape(self) -> Snapshot:
        return self.snapshots.pop(0) if self.snapshots else Snapshot(time.time())

    def close(self) -> None:
        self.closed = True


class FakeMesh:
    """A mesh driver that keeps the whole mesh in a dict: changes are recorded, nothing runs.

    Its state survives in ``state_dir/fake-state.json``-free memory only, so ``cleanup`` tests construct
    it once and pass it around. ``fingerprint`` is the configuration a real driver would render:
    runtime keys per node, policy overrides, splits.
    """

    name = "fake"
    capabilities = Capabilities(
        mesh="fake", faults=frozenset({"http-abort", "http-delay"}),
        http_placements=frozenset({"target", "caller"}),
        policy_fields=frozenset({"retries", "timeout", "circuit_breaker", "outlier_detection"}),
        evidence=frozenset({"client", "sidecar-counters"}),
    )

    def __init__(self, env: Environment, env_path: Path, state_dir: Path) -> None:
        self.env = env
        self.env_path = env_path
        self.state_dir = state_dir
        self.running = False
        self.runtime: dict[str, dict[str, Any]] = {}
        self.overrides: dict[str, dict[str, Any]] = {}
        self.splits: dict[str, dict[str, float]] = {}
        self.applied: list[Prepared] = []
        self.undone: list[dict[str, Any]] = []

    @classmethod
    def for_environment(cls, env: Environment, env_path: Path, state_dir: Path | None = None) -> Self:
        return cls(env, env_path, state_dir or Path("/nonexistent/fake-mesh"))

    # lifecycle
    def up(self, timeout_s: float = 30.0, on_event: Callable[[str], None] | None = None) -> str:
        self.running = True
        return self.topology().gateway_url

    def down(self) -> list[str]:
        self.running = False
        return []

    def is_up(self) -> bool:
        return self.running

    def status(self) -> dict[str, Any]:
        return {"running": self.running, "overrides": self.overrides, "splits": self.splits}

    def close(self) -> None:
        pass

    # topology and metrics
    def _ids(self, service: str, version: str | None = None) -> list[str]:
        svc = self.env.spec.service(service)
        return [f"{service}-{v}-{i}" for v, spec in svc.versions.items() if version in (None, v)
                for i in range(spec.replicas)]

    def topology(self) -> Topology:
        nodes = [NodeInfo(GATEWAY, GATEWAY, GATEWAY)]
        for svc in self.env.spec.services:
            for node_id in self._ids(svc.name):
                nodes.append(NodeInfo(node_id, svc.name, node_id[len(svc.name) + 1:].rsplit("-", 1)[0]))
        return Topology(tuple(nodes), "http://127.0.0.1:9")

    def policy(self, caller: str, callee: str) -> ResolvedPolicy:
        if caller == GATEWAY:
            return resolve(None)
        override = self.overrides.get(f"{caller}->{callee}")
        return resolve(merge_policy(self.env.spec.call(caller, callee),
                                    EdgePolicy.model_validate(override) if override else None))

    def metric_source(self, interval_s: float) -> FakeSource:
        return FakeSource({n.id: n for n in self.topology().nodes})

    # changes
    def prepare(self, intent: Intent) -> Prepared:
        if isinstance(intent, HttpFault):
            nodes = self._ids(intent.service, intent.version)
            keys = [f"fake.{intent.kind}.{intent.service}"]
            return Prepared(intent, f"{intent.kind} {intent.percent:g}% on {', '.join(nodes)}",
                            {"op": "runtime-set", "nodes": nodes, "values": {keys[0]: intent.percent}},
                            {"op": "runtime-clear", "nodes": nodes, "keys": keys})
        if isinstance(intent, PolicyOverride):
            key = f"{intent.caller}->{intent.callee}"
            previous = self.overrides.get(key)
            return Prepared(intent, f"policy {key}", {"op": "policy-set", "edge": key,
                                                     "policy": dict(previous or {}) | intent.fields},
                            {"op": "policy-restore", "edge": key, "previous": previous})
        if isinstance(intent, SplitChange):
            return Prepared(intent, f"split {intent.service}", {"op": "split-set", "service": intent.service,
                                                               "split": dict(intent.weights)},
                            {"op": "split-restore", "service": intent.service,
                             "previous": self.splits.get(intent.service)})
        raise FaultError(f"the fake mesh cannot carry out {type(intent).__name__}")

    def apply(self, prepared: Prepared) -> float:
        do = prepared.do
        if do["op"] == "runtime-set":
            for node in do["nodes"]:
                self.runtime.setdefault(node, {}).update(do["values"])
        elif do["op"] == "policy-set":
            self.overrides[do["edge"]] = do["policy"]
        elif do["op"] == "split-set":
            self.splits[do["service"]] = do["split"]
        self.applied.append(prepared)
        return 0.0

    def undo(self, undo: dict[str, Any]) -> None:
        self.undone.append(undo)
        if undo["op"] == "runtime-clear":
            for node in undo["nodes"]:
                for key in undo["keys"]:
                    self.runtime.get(node, {}).pop(key, None)
                if not self.runtime.get(node, True):
                    del self.runtime[node]
        elif undo["op"] == "policy-restore":
            _restore(self.overrides, undo["edge"], undo.get("previous"))
        elif undo["op"] == "split-restore":
            _restore(self.splits, undo["service"], undo.get("previous"))
        else:
            raise FaultError(f"unknown undo operation {undo['op']!r}")

    def logs_hint(self, part: str | None = None) -> str:
        return "(a fake mesh keeps no logs)"

    def fingerprint(self) -> dict[str, Any]:
        return copy.deepcopy({"runtime": self.runtime, "overrides": self.overrides, "splits": self.splits})


def _restore(table: dict[str, Any], key: str, previous: Any) -> None:
    if previous is None:
        table.pop(key, None)
    else:
        table[key] = previous


def failing_driver(target: str, *, fail_on_apply: int | None = None, fail_on_undo: int | None = None,
                   bug: bool = False) -> type[MeshDriver]:
    """A driver class that behaves as ``target`` (``module:Class``) but fails on cue.

    ``fail_on_apply=N``: the Nth ``apply`` of the process first carries out its change (as a change that
    broke half-way would have), then raises FaultError (or, with ``bug``, a KeyError: a bug of ours).
    ``fail_on_undo=N``: the Nth ``undo`` raises MeshError without undoing. Counts are per class.
    """
    module, _, name = target.partition(":")
    import importlib

    base: type[Any] = getattr(importlib.import_module(module), name)
    counts = {"apply": 0, "undo": 0}

    class Failing(base):  # type: ignore[misc]
        def apply(self, prepared: Prepared) -> float:
            counts["apply"] += 1
            result: float = super().apply(prepared)
            if counts["apply"] == fail_on_apply:
                if bug:
                    raise KeyError("a planted bug, after the change took effect")
                raise FaultError("a planted failure while applying a change, after it took effect")
            return result

        def undo(self, undo: dict[str, Any]) -> None:
            counts["undo"] += 1
            if counts["undo"] == fail_on_undo:
                raise MeshError("a planted failure while undoing a change")
            super().undo(undo)

    Failing.__name__ = Failing.__qualname__ = f"Failing{name}"
    return Failing


@contextlib.contextmanager
def registered_driver(mesh: str, driver: type[MeshDriver] | str) -> Iterator[None]:
    """Use ``driver`` (a class, or ``module:Class``) for environments with ``mesh:`` = ``mesh`` inside the block."""
    saved = DRIVERS.get(mesh)
    DRIVERS[mesh] = driver
    try:
        yield
    finally:
        if saved is None:
            DRIVERS.pop(mesh, None)
        else:
            DRIVERS[mesh] = saved
