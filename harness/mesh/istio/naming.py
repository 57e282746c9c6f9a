"""Istio's Envoy stat names, mapped into the harness's vocabulary.

istiod names a cluster ``outbound|<port>|<subset>|<host>`` (``inbound|<port>||`` for the workload's own
app) and gives each an ``alt_stat_name`` ending in ``;``, so a stat reads
``cluster.outbound|9082|v1|reviews.shop.svc.cluster.local;.upstream_rq_total``. HTTP connection managers
are prefixed ``inbound_<address>_<port>;`` and ``outbound_<address>_<port>;``: with one egress listener per
callee port (see :mod:`harness.mesh.istio.objects`), the port says which callee an outbound listener is
for. The gateway's listener is an outbound one on the gateway's own port.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.metrics.envoy_names import EnvoyNaming
from harness.metrics.vocabulary import Listener, Upstream

__all__ = ["IstioNaming"]


class IstioNaming(EnvoyNaming):
    """Stats of istiod-configured Envoys. ``callees`` maps a service port to its service; ``gateway_port``
    is the port the ingress gateway listens on; ``subsets`` maps (service, subset name) to the version the
    subset selects, where a DestinationRule names its subsets otherwise (``stable``, ``canary``)."""

    stats_filter = (
        r"^(cluster\.outbound\|[^;]*;\.(upstream_rq|upstream_cx_connect_fail|upstream_cx_overflow"
        r"|upstream_cx_none_healthy|lb_healthy_panic|membership_(total|healthy)$"
        r"|retry\.|outlier_detection\.|circuit_breakers\.|ssl\.)"
        r"|http\.(inbound|outbound)_[^;]*;\.(downstream_rq_|fault\.)"
        r"|listener\..*ssl\.)"
    )
    histogram_filter = r"^http\.(inbound|outbound)_[^;]*;\.downstream_rq_time$"
    endpoint_filter = r"^cluster\.outbound\|[^;]*;\.endpoint\..*\.(rq_total|rq_error|healthy)$"

    def __init__(self, callees: Mapping[int, str], gateway_port: int,
                 subsets: Mapping[tuple[str, str], str] | None = None) -> None:
        self.callees = dict(callees)
        self.gateway_port = gateway_port
        self.subsets = dict(subsets or {})

    def split_cluster_stat(self, name: str) -> tuple[str, str] | None:
        cluster, sep, suffix = name[len("cluster."):].partition(";.")
        if sep:
            return cluster, suffix
        cluster, dot, suffix = name[len("cluster."):].partition(".")
        return (cluster, suffix) if dot and "|" not in suffix else None

    def split_listener_stat(self, name: str) -> tuple[str, str] | None:
        if not name.startswith("http."):
            return None
        prefix, sep, suffix = name[len("http."):].partition(";.")
        return (prefix, suffix) if sep else None

    def upstream(self, cluster: str) -> Upstream | None:
        parts = cluster.split("|")
        if len(parts) != 4 or parts[0] != "outbound" or not parts[2]:
            return None  # the app behind an inbound listener, or a host routed to without a version subset
        service = parts[3].split(".", 1)[0]
        return Upstream(service, self.subsets.get((service, parts[2]), parts[2]))

    def listener(self, prefix: str) -> Listener | None:
        side, _, rest = prefix.partition("_")
        port_text = rest.rpartition("_")[2]
        if side == "inbound":
            return Listener("inbound")
        if side != "outbound" or not port_text.isdigit():
            return None
        port = int(port_text)
        if port == self.gateway_port and port not in self.callees:
            return Listener("ingress")
        callee = self.callees.get(port)
        return Listener("outbound", callee) if callee else None

    def tls_listener(self, name: str) -> tuple[Listener, str] | None:
        """Handshakes on a sidecar's inbound listener (``listener.<address>_<port>.ssl.*``), the only one
        that terminates mTLS."""
        return self.inbound_tls(name, self.callees)
