"""Consul's Envoy stat names, mapped into the harness's vocabulary.

Consul (1.16) names an upstream cluster by its SNI, ``[<subset>.]<service>.<namespace>.<datacenter>.internal.
<trust domain>.consul`` (``v1.api.default.dc1.internal.e4061ca8-….consul``), so a cluster stat reads
``cluster.<that>.upstream_rq_total``; the sidecar's own app is ``local_app``. HTTP connection managers are
prefixed ``public_listener`` (a sidecar's inbound side), ``upstream.<service>.<namespace>.<partition>.<dc>``
(one per explicit upstream) and ``ingress_upstream_<port>`` (the ingress gateway's listener). A cluster whose
caller overrides its connect timeout or protocol is named ``<8 hex>~<sni>``. A sidecar's
inbound TLS listener is ``listener.127.0.0.1_<port>``. Measured on Consul v1.16.1 with Envoy 1.40.

The driver names each resolver subset after its version, so a subset is a version; a service with one version
has no subset, and its one version is filled in from the environment.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from harness.metrics.envoy_names import EnvoyNaming
from harness.metrics.vocabulary import Listener, Upstream

__all__ = ["ConsulNaming"]

_SNI_TAIL = 6
"""Parts of an unsubsetted SNI: service, namespace, datacenter, ``internal``, trust-domain id, ``consul``."""


class ConsulNaming(EnvoyNaming):
    """Stats of Consul-configured Envoys. ``versions`` maps each service to its versions (a one-version service's
    clusters have no subset); ``inbound_ports`` are the sidecars' public listener ports (their TLS stats)."""

    stats_filter = (
        r"^(cluster\.[^:]*\.consul\.(upstream_rq|upstream_cx_connect_fail|upstream_cx_overflow"
        r"|upstream_cx_none_healthy|lb_healthy_panic|membership_(total|healthy)$"
        r"|retry\.|outlier_detection\.|circuit_breakers\.|ssl\.)"
        r"|http\.(public_listener|upstream\.[^:]*|ingress_upstream_[0-9]+)\.(downstream_rq_|fault\.|rbac\.)"
        r"|listener\..*ssl\.)"
    )
    histogram_filter = r"^http\.(public_listener|upstream\.[^:]*|ingress_upstream_[0-9]+)\.downstream_rq_time$"

    def __init__(self, versions: Mapping[str, Collection[str]], inbound_ports: Collection[int] = (),
                 ingress_ports: Collection[int] | None = None) -> None:
        self.versions = {service: tuple(v) for service, v in versions.items()}
        self.inbound_ports = frozenset(inbound_ports)
        self.ingress_ports = None if ingress_ports is None else frozenset(ingress_ports)
        """The ingress listeners that are the gateway's (None: every one)."""

    def split_cluster_stat(self, name: str) -> tuple[str, str] | None:
        rest = name[len("cluster."):]
        cluster, sep, suffix = rest.rpartition(".consul.")  # a service, subset or datacenter may be "consul"
        if sep:
            return cluster + ".consul", suffix
        cluster, dot, suffix = rest.partition(".")
        return (cluster, suffix) if dot else None

    def split_listener_stat(self, name: str) -> tuple[str, str] | None:
        if not name.startswith("http."):
            return None
        rest = name[len("http."):]
        if rest.startswith("upstream."):
            parts = rest.split(".")
            return (".".join(parts[:5]), ".".join(parts[5:])) if len(parts) > 5 else None
        prefix, dot, suffix = rest.partition(".")
        return (prefix, suffix) if dot else None

    def upstream(self, cluster: str) -> Upstream | None:
        parts = cluster.rpartition("~")[2].split(".")  # a caller's own connect timeout or protocol: <hash>~<sni>
        if len(parts) < _SNI_TAIL or parts[-1] != "consul" or parts[-3] != "internal":
            return None  # local_app, local_agent, or a peered or external cluster
        service = parts[-_SNI_TAIL]
        versions = self.versions.get(service, ())
        if len(parts) == _SNI_TAIL + 1:
            return Upstream(service, parts[0])
        if len(parts) == _SNI_TAIL and len(versions) == 1:
            return Upstream(service, versions[0])
        return None  # a service of several versions reached without a subset: no one version to count it to

    def listener(self, prefix: str) -> Listener | None:
        if prefix == "public_listener":
            return Listener("inbound")
        if prefix.startswith("upstream."):
            return Listener("outbound", prefix.split(".")[1])
        if prefix.startswith("ingress_upstream_"):
            port = prefix[len("ingress_upstream_"):]
            if self.ingress_ports is None or (port.isdigit() and int(port) in self.ingress_ports):
                return Listener("ingress")
        return None

    def tls_listener(self, name: str) -> tuple[Listener, str] | None:
        """Handshakes on a sidecar's public listener (``listener.127.0.0.1_<port>.ssl.*``), where Connect's
        mTLS is terminated."""
        return self.inbound_tls(name, self.inbound_ports)
