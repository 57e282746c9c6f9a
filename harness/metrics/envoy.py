"""Metric source ``envoy``: scrape every sidecar's admin ``/stats`` about once a second.

Only the counters expectations use are fetched (a regex filter on the admin side keeps each scrape to a
few kilobytes), and snapshots are also taken on demand at every phase boundary so that windows start
and end exactly where the phases do, not at the next tick. Each sidecar's ``/clusters`` adds what no
stat has: each callee host's requests and whether it is ejected right now, which is how an ejection
verdict sees that an ejected instance got no traffic. The snapshots keep Envoy's own names; the
source's :class:`~harness.metrics.envoy_names.EnvoyNaming` maps them into the harness's vocabulary.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from harness.metrics.envoy_names import LOCAL, EnvoyNaming
from harness.metrics.snapshot import Bins, NodeInfo, Snapshot
from harness.metrics.targets import TargetClients

__all__ = ["HISTOGRAM_FILTER", "STATS_FILTER", "EnvoySource", "parse_clusters", "read_apps"]

STATS_FILTER = LOCAL.stats_filter
HISTOGRAM_FILTER = LOCAL.histogram_filter
"""Latency as each listener's callers saw it, in milliseconds."""


def parse_clusters(data: dict[str, object], naming: EnvoyNaming = LOCAL) -> dict[str, dict[str, dict[str, float]]]:
    """Per callee cluster, per host address: requests, errors and the outlier-ejection flag, from the
    admin ``/clusters?format=json`` (Envoy writes counter values as strings and leaves zeros out)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    statuses = data.get("cluster_statuses")
    for cluster in statuses if isinstance(statuses, list) else []:
        name = cluster.get("name", "")
        if naming.upstream(name) is None:
            continue
        hosts: dict[str, dict[str, float]] = {}
        for host in cluster.get("host_statuses") or []:
            sock = (host.get("address") or {}).get("socket_address") or {}
            stats = {s.get("name"): float(s.get("value", 0)) for s in host.get("stats") or []}
            hosts[f"{sock.get('address', '')}:{sock.get('port_value', '')}"] = {
                "rq_total": stats.get("rq_total", 0.0),
                "rq_error": stats.get("rq_error", 0.0),
                "ejected": 1.0 if (host.get("health_status") or {}).get("failed_outlier_check") else 0.0,
            }
        out[name] = hosts
    return out


def read_apps(client: httpx.Client | TargetClients, pool: ThreadPoolExecutor,
              apps: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """The demo apps' own counters (``/__harness/stats``), read in parallel (a paused app costs its timeout
    once, not once per app); an app that does not answer is left out. Every source reads them so: they are
    the workload's ground truth, not a mesh metric."""
    out: dict[str, Any] = {}

    def read(item: tuple[str, int]) -> None:
        with contextlib.suppress(httpx.HTTPError, OSError, ValueError):
            out[item[0]] = dict(client.get(f"http://127.0.0.1:{item[1]}/__harness/stats").json())

    list(pool.map(read, apps))
    return out


class EnvoySource:
    """Snapshots of Envoy admin counters plus the demo apps' own counters."""

    def __init__(self, nodes: Sequence[tuple[NodeInfo, int]], apps: Sequence[tuple[str, int]],
                 interval_s: float, naming: EnvoyNaming) -> None:
        self.nodes = list(nodes)
        self.apps = list(apps)
        self.interval_s = interval_s
        self.naming = naming
        # The last hour at one scrape a second: enough for any experiment's plots, bounded for game days.
        self.history: deque[Snapshot] = deque(maxlen=3600)
        self._client = TargetClients(timeout_s=2.0)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="scrape")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[Snapshot], None]] = []

    def _envoy(self, port: int) -> tuple[dict[str, float], dict[str, Bins]]:
        """Counters and latency histograms of one Envoy, in one admin request.

        Histograms come as Envoy's detailed bins (lower bound, width, count), cumulative since start, so
        windows subtract them like counters; ``stats_flush_on_admin`` makes them current at each request.
        """
        naming = self.naming
        data = self._client.get(f"http://127.0.0.1:{port}/stats", params={
            "format": "json", "usedonly": "", "filter": f"{naming.stats_filter}|{naming.histogram_filter}",
            "histogram_buckets": "detailed"}).json()
        counters: dict[str, float] = {}
        histograms: dict[str, Bins] = {}
        for entry in data.get("stats", []):
            if "histograms" in entry:
                for detail in entry["histograms"].get("details", []):
                    histograms[detail["name"]] = [
                        (float(b["lower_bound"]), float(b["width"]), int(b["count"])) for b in detail.get("totals", [])
                    ]
            elif isinstance(entry.get("value"), int | float):
                counters[entry["name"]] = float(entry["value"])
        return counters, histograms

    def _hosts(self, port: int) -> dict[str, dict[str, dict[str, float]]]:
        return parse_clusters(self._client.get(f"http://127.0.0.1:{port}/clusters",
                                               params={"format": "json"}).json(), self.naming)


    def scrape(self) -> Snapshot:
        """One snapshot of everything, fetched in parallel; an unreachable node contributes nothing."""
        t = time.time()
        snap = Snapshot(t, naming=self.naming, history=self.history)

        def envoy(item: tuple[NodeInfo, int]) -> None:
            with contextlib.suppress(httpx.HTTPError, OSError, ValueError, KeyError):
                snap.envoy[item[0].id], snap.hist[item[0].id] = self._envoy(item[1])
            with contextlib.suppress(httpx.HTTPError, OSError, ValueError, KeyError, AttributeError, TypeError):
                snap.hosts[item[0].id] = self._hosts(item[1])

        list(self._pool.map(envoy, self.nodes))
        snap.apps.update(read_apps(self._client, self._pool, self.apps))
        self.history.append(snap)
        return snap

    def on_snapshot(self, listener: Callable[[Snapshot], None]) -> None:
        self._listeners.append(listener)

    def start(self) -> None:
        """Scrape in the background every ``interval_s`` until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                snap = self.scrape()
                for listener in self._listeners:
                    listener(snap)

        self._thread = threading.Thread(target=loop, name="envoy-scraper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def close(self) -> None:
        self.stop()
        self._pool.shutdown(wait=True)
        self._client.close()

    @property
    def node_info(self) -> dict[str, NodeInfo]:
        return {info.id: info for info, _ in self.nodes}
