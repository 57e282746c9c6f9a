"""Network faults on the local mesh: a Toxiproxy on the wire of an edge, only while a fault needs it.

For an edge ``caller -> callee``, one proxy per callee instance forwards to that instance's inbound
listener; the caller's Envoys are re-pointed at the proxies (CDS: the instance's endpoint becomes the
proxy's port), so every byte between the caller's sidecar and the callee's sidecar — TLS included,
untouched — crosses the proxy, where the toxics act. Other callers of the callee are not affected.

A fault adds its toxics to the edge's proxies; its undo removes them, and the last undo on an edge puts
the callers' endpoints back and deletes the proxies. A partition is a ``timeout`` toxic of 0 (bytes are
dropped, connections hang: ``blackhole``) or disabled proxies (connections are refused: ``reject``), on
every edge between the two groups, in both directions that exist.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from harness._errors import FaultError
from harness.mesh.base import Prepared
from harness.mesh.intents import NetworkToxic, Partition

if TYPE_CHECKING:
    from harness.mesh.local.driver import LocalMesh

__all__ = ["apply", "partition_edges", "prepare", "undo"]

PARTITION_TOXIC = "partition"


def partition_edges(mesh: LocalMesh, sides: tuple[tuple[str, ...], tuple[str, ...]]) -> list[tuple[str, str]]:
    """Every edge of the environment between the two groups, in either direction."""
    a, b = set(sides[0]), set(sides[1])
    return [(x, y) for x, y in mesh.env.spec.edges() if (x in a and y in b) or (x in b and y in a)]


def _proxies(mesh: LocalMesh, caller: str, callee: str) -> dict[str, str]:
    """Proxy name -> the callee instance it fronts, for one edge (names are stable: undo finds them)."""
    from harness.mesh.local.changes import instance_ids

    return {f"{caller}--{callee}--{inst}": inst for inst in instance_ids(mesh, callee)}


def prepare(mesh: LocalMesh, intent: NetworkToxic | Partition) -> Prepared:
    if isinstance(intent, NetworkToxic):
        edges = [(intent.caller, intent.callee)]
        # Named after the whole intent: two faults of one type on one edge are two toxics (each undone on
        # its own), and the same fault applied again replaces itself.
        digest = hashlib.sha1(repr(intent).encode()).hexdigest()[:8]
        name = f"{intent.toxic}-{intent.stream}-{digest}"
        toxics = [{"name": name, "type": intent.toxic, "stream": intent.stream, "toxicity": intent.toxicity,
                   "attributes": dict(intent.attributes)}]
        shown = ", ".join(f"{k}={v:g}" for k, v in intent.attributes)
        what = f"toxic {intent.toxic} ({shown or 'defaults'}, {intent.stream}, toxicity {intent.toxicity:g})"
        enabled = True
    else:
        if intent.via != "proxy":
            raise FaultError(f"the {mesh.name} mesh partitions through Toxiproxy only (via: proxy)")
        edges = partition_edges(mesh, intent.sides)
        if not edges:
            raise FaultError(f"partition: no calls between {', '.join(intent.sides[0])} and "
                             f"{', '.join(intent.sides[1])}, so there is nothing to cut")
        toxics = ([{"name": f"{PARTITION_TOXIC}-{stream}", "type": "timeout", "stream": stream, "toxicity": 1.0,
                    "attributes": {"timeout": 0}} for stream in ("upstream", "downstream")]
                  if intent.mode == "blackhole" else [])
        what = ("partition: bytes dropped, connections hang" if intent.mode == "blackhole"
                else "partition: connections refused")
        enabled = intent.mode != "reject"
    plan = [{"caller": c, "callee": d, "proxies": _proxies(mesh, c, d)} for c, d in edges]
    where = "; ".join(f"{e['caller']}->{e['callee']} through {len(e['proxies'])} proxy(ies)" for e in plan)
    return Prepared(
        intent, f"{what} on the wire of {where} (Toxiproxy interposed for the fault)",
        {"op": "wire-set", "edges": plan, "toxics": toxics, "enabled": enabled},
        {"op": "wire-clear", "edges": plan, "toxics": [t["name"] for t in toxics], "enable": not enabled},
    )


def apply(mesh: LocalMesh, do: dict[str, Any]) -> None:
    """Proxies with their toxics first (no traffic yet), then the callers re-pointed at them."""
    client = mesh.toxiproxy()
    layout = mesh.layout
    ports = {i.id: i.inbound_port for i in layout.instances}
    repoint: dict[str, dict[str, int]] = {}
    for edge in do["edges"]:
        endpoints: dict[str, int] = {}
        for proxy, inst in edge["proxies"].items():
            # The proxy listens where the callers' Envoys reach the Toxiproxy server (layout.address), on
            # its loopback locally, on every address of its container in compose.
            listen = client.ensure_proxy(proxy, f"{layout.address(inst)}:{ports[inst]}", f"{layout.bind}:0")
            endpoints[inst] = int(listen.rsplit(":", 1)[1])
            for toxic in do["toxics"]:
                client.set_toxic(proxy, toxic["name"], toxic["type"], toxic["attributes"], toxic["stream"],
                                 toxic["toxicity"])
        repoint[f"{edge['caller']}->{edge['callee']}"] = endpoints
    mesh.set_interposed(repoint)
    if not do["enabled"]:
        # Refused only once the callers go through the proxies: disabling first would not change where
        # they connect, and they would keep reaching the callee directly.
        for edge in do["edges"]:
            for proxy in edge["proxies"]:
                client.set_enabled(proxy, False)


def undo(mesh: LocalMesh, data: dict[str, Any]) -> None:
    """Remove this fault's toxics (and re-enable refused proxies); un-interpose edges nothing else uses."""
    try:
        client = mesh.toxiproxy()
        existing = client.proxies()
    except FaultError:
        # No server (it died, or an older mesh never had one): its proxies are gone with it, so the callers
        # must be pointed back at the instances whatever else is left to undo.
        mesh.set_interposed({f"{e['caller']}->{e['callee']}": None for e in data["edges"]})
        return
    idle: list[dict[str, Any]] = []
    for edge in data["edges"]:
        names = [p for p in edge["proxies"] if p in existing]
        for proxy in names:
            for toxic in data["toxics"]:
                client.remove_toxic(proxy, toxic)
            if data.get("enable"):
                client.set_enabled(proxy, True)
        if all(not client.toxics(p) and client.proxies().get(p, {}).get("enabled", True) for p in names):
            idle.append(edge)
    if idle:
        mesh.set_interposed({f"{e['caller']}->{e['callee']}": None for e in idle})
        for edge in idle:
            for proxy in edge["proxies"]:
                client.remove_proxy(proxy)
