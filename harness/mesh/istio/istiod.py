"""Running the real Istio control plane (``pilot-discovery``, i.e. istiod) for local workloads.

istiod runs with no Kubernetes: its configuration store is a directory of YAML files (``--configDir``,
watched with fsnotify), its service registry only the ServiceEntry and WorkloadEntry objects in it
(``--registries=``; ``Mock`` is refused by istiod). Every address is bound to 127.0.0.1; xDS is the
plaintext port (no token is needed there). The Istio-proxy-only extensions that upstream Envoy rejects
(metadata exchange, the ALPN filter) are switched off by environment, and the mesh config names no
Prometheus telemetry provider (istiod's built-in default has none), so istiod emits only filters
upstream Envoy 1.40 has. See ../shared/reference/istio-local.md and docs/concepts/istio.md.
"""

from __future__ import annotations

from pathlib import Path

from harness._errors import MeshError
from harness.install import ISTIOD_NO_KUBE_PATCH, component, locate

__all__ = ["ISTIOD_ENV", "IstiodMissing", "argv", "crash_reason", "find_istiod", "mesh_config"]

ISTIOD_ENV = {
    "PILOT_ENABLE_METADATA_EXCHANGE": "false",
    "PILOT_ENABLE_ALPN_FILTER": "false",
    # No webhooks, no status writes: there is no API server to serve or write them to.
    "INJECTION_WEBHOOK_CONFIG_NAME": "",
    "VALIDATION_WEBHOOK_CONFIG_NAME": "",
    "PILOT_ENABLE_STATUS": "false",
}
"""What istiod needs to configure upstream Envoy: reference/istio-local.md, measured on Envoy 1.40."""


class IstiodMissing(MeshError):
    """No ``pilot-discovery`` was found; the message says how to get one."""


def find_istiod() -> str:
    """``$MESH_HARNESS_ISTIOD``, else ``pilot-discovery`` on PATH, else the build ``mesh-harness install
    istiod`` left in the cache; IstiodMissing (with how to get one) when there is none."""
    item = component("istiod")
    return locate("MESH_HARNESS_ISTIOD", "pilot-discovery", "istiod", IstiodMissing,
                  "mesh: istio with control_plane: local runs the real istiod (pilot-discovery), and none was found. "
                  f"Build it once with: mesh-harness install istiod (Go 1.26 and the Go module proxy; about 4 minutes "
                  f"and 3 GB of memory: {item.package}@{item.version} with one nil check on the no-Kubernetes path), "
                  "or put pilot-discovery on PATH, or set MESH_HARNESS_ISTIOD to its path")


def mesh_config(grpc_port: int) -> dict[str, object]:
    """The MeshConfig istiod serves: the root namespace whose PeerAuthentication is mesh-wide, the trust
    domain of the harness's certificates, auto mTLS (clients follow the servers' mode), no telemetry."""
    return {"rootNamespace": "istio-system", "trustDomain": "cluster.local", "enableAutoMtls": True,
            "defaultConfig": {"discoveryAddress": f"127.0.0.1:{grpc_port}"}}


def argv(binary: str, config_dir: Path, mesh_file: Path, networks_file: Path, grpc_port: int, http_port: int,
         monitoring_port: int) -> list[str]:
    """istiod's command line: config from files, no registry but the ServiceEntries, all on 127.0.0.1,
    no secure gRPC or webhook ports (nothing would use them)."""
    return [binary, "discovery", "--configDir", str(config_dir), "--registries=", "--meshConfig", str(mesh_file),
            "--networksConfig", str(networks_file), "--domain", "cluster.local",
            "--grpcAddr", f"127.0.0.1:{grpc_port}", "--httpAddr", f"127.0.0.1:{http_port}",
            "--monitoringAddr", f"127.0.0.1:{monitoring_port}", "--secureGRPCAddr", "", "--httpsAddr", "",
            "--ctrlz_port", "0", "--log_output_level", "default:warn,ads:warn,krt:warn"]


def crash_reason(log: str) -> str | None:
    """Why istiod died, when its log shows a known cause: the unpatched no-Kubernetes crash, or an object in
    its config directory it refuses (istiod exits at start when one file is invalid)."""
    if "nil pointer dereference" in log and "serviceentry" in log and "ConfigCluster" in log:
        return ("this pilot-discovery is an unpatched build: istiod crashes on its no-Kubernetes path. "
                + ISTIOD_NO_KUBE_PATCH.why + " Build the patched one with: mesh-harness install istiod")
    for line in log.splitlines():
        if "Failed to parse" in line:
            return ("istiod refused an Istio object and would not start: " + line.split("Failed to parse", 1)[1].strip()
                    + " (an object of istio.config, or one the harness derived: check the file it names)")
    return None
