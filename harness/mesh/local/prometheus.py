"""The Prometheus a local mesh starts for ``metrics: {source: prometheus}`` without a ``url``.

Debian's ``prometheus`` (or any on PATH), on 127.0.0.1, scraping every Envoy's ``/stats/prometheus`` at
the environment's ``scrape_interval`` through file-based service discovery (``targets.json``, one
target per Envoy, labelled with its node, service and version), with its data in the mesh's state
directory. It is one more process of the mesh: recorded in ``state.json``, stopped by ``down``, found by
``cleanup`` from its command line. Each scrape passes the admin ``filter`` of what the source reads, so
an Envoy renders a few kilobytes a second, not its every stat.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from harness._errors import MeshError
from harness.metrics.envoy_names import EnvoyNaming
from harness.metrics.prometheus import scrape_filter
from harness.metrics.snapshot import NodeInfo

__all__ = ["CONFIG_NAME", "PACKAGE_HINT", "argv", "find_prometheus", "promql_duration", "write_config"]

CONFIG_NAME = "prometheus.yml"
PACKAGE_HINT = ("install Debian's prometheus package (apt-get install prometheus) or put a prometheus binary "
                "on PATH; or give metrics.url of a Prometheus that scrapes the mesh, or use "
                "metrics: {source: envoy}")


def find_prometheus() -> str:
    """The ``prometheus`` binary on PATH; MeshError (exit 3) naming the package when there is none."""
    found = shutil.which("prometheus")
    if found is None:
        raise MeshError(f"metrics: {{source: prometheus}} without a url needs a Prometheus to start: {PACKAGE_HINT}")
    return found


def promql_duration(seconds: float) -> str:
    """``seconds`` as a Prometheus duration (whole milliseconds: ``1s``, ``500ms``)."""
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def write_config(directory: Path, nodes: list[tuple[NodeInfo, str]], interval_s: float,
                 naming: EnvoyNaming) -> Path:
    """Write ``prometheus.yml`` and its ``targets.json`` into ``directory``; return the config's path.

    JSON is YAML, so the config is written with :mod:`json` (no YAML writer needed, and no quoting
    surprises in the filter regex). ``nodes`` pairs each Envoy with its admin address as Prometheus
    reaches it (``127.0.0.1:PORT`` locally, the container's address in compose).
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A previous mesh's data would answer for up to 5 minutes (no staleness markers after a shutdown).
    shutil.rmtree(directory / "data", ignore_errors=True)
    targets = [{"targets": [address], "labels": {"node": info.id, "service": info.service, "version": info.version}}
               for info, address in nodes]
    targets_file = directory / "targets.json"
    tmp = targets_file.with_name(".targets.json.tmp")
    tmp.write_text(json.dumps(targets, indent=1))
    os.replace(tmp, targets_file)
    interval = promql_duration(interval_s)
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "scrape_configs": [{
            "job_name": "mesh-harness",
            "metrics_path": "/stats/prometheus",
            "params": {"usedonly": [""], "filter": [scrape_filter(naming)]},
            "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}],
        }],
    }
    path = directory / CONFIG_NAME
    path.write_text(json.dumps(config, indent=1))
    return path


def argv(binary: str, config: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line: listen on 127.0.0.1 only (``host``: a container's own namespace), data beside the
    config, kept a day at most."""
    return [binary, f"--config.file={config}", f"--web.listen-address={host}:{port}",
            f"--storage.tsdb.path={config.parent / 'data'}", "--storage.tsdb.retention.time=1d",
            "--log.level=warn"]
