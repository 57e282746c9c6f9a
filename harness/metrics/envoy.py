"""Metric source ``envoy``: scrape every sidecar's admin ``/stats`` about once a second.

Only the counters expectations use are fetched (a regex filter on the admin side keeps each scrape to a
few kilobytes), and snapshots are also taken on demand at every phase boundary so that windows start
and end exactly where the phases do, not at the next tick.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx

from harness.metrics.snapshot import Bins, NodeInfo, Snapshot

__all__ = ["HISTOGRAM_FILTER", "STATS_FILTER", "EnvoySource"]

STATS_FILTER = (
    r"^(cluster\.(out_|inbound_app)[^.]*\.(upstream_rq|upstream_cx_connect_fail|upstream_cx_overflow"
    r"|retry\.|outlier_detection\.|circuit_breakers\.|ssl\.)"
    r"|http\.(inbound|outbound_[^.]*|gateway)\.(downstream_rq_|fault\.)"
    r"|listener\..*ssl\.)"
)
HISTOGRAM_FILTER = r"^http\.(inbound|outbound_[^.]*|gateway)\.downstream_rq_time$"
"""Latency as each listener's callers saw it, in milliseconds."""


class EnvoySource:
    """Snapshots of Envoy admin counters plus the demo apps' own counters."""

    def __init__(self, nodes: Sequence[tuple[NodeInfo, int]], apps: Sequence[tuple[str, int]],
                 interval_s: float = 1.0) -> None:
        self.nodes = list(nodes)
        self.apps = list(apps)
        self.interval_s = interval_s
        # The last hour at one scrape a second: enough for any experiment's plots, bounded for game days.
        self.history: deque[Snapshot] = deque(maxlen=3600)
        self._client = httpx.Client(timeout=2.0, limits=httpx.Limits(max_keepalive_connections=64))
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="scrape")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[Snapshot], None]] = []

    def _envoy(self, port: int) -> tuple[dict[str, float], dict[str, Bins]]:
        """Counters and latency histograms of one Envoy, in one admin request.

        Histograms come as Envoy's detailed bins (lower bound, width, count), cumulative since start, so
        windows subtract them like counters; ``stats_flush_on_admin`` makes them current at each request.
        """
        data = self._client.get(f"http://127.0.0.1:{port}/stats", params={
            "format": "json", "usedonly": "", "filter": f"{STATS_FILTER}|{HISTOGRAM_FILTER}",
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

    def _app(self, port: int) -> dict[str, object]:
        return dict(self._client.get(f"http://127.0.0.1:{port}/__harness/stats").json())

    def scrape(self) -> Snapshot:
        """One snapshot of everything, fetched in parallel; an unreachable node contributes nothing."""
        t = time.time()
        snap = Snapshot(t)

        def envoy(item: tuple[NodeInfo, int]) -> None:
            with contextlib.suppress(httpx.HTTPError, OSError, ValueError, KeyError):
                snap.envoy[item[0].id], snap.hist[item[0].id] = self._envoy(item[1])

        def app(item: tuple[str, int]) -> None:
            with contextlib.suppress(httpx.HTTPError, OSError, ValueError):
                snap.apps[item[0]] = self._app(item[1])

        list(self._pool.map(envoy, self.nodes))
        list(self._pool.map(app, self.apps))
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
