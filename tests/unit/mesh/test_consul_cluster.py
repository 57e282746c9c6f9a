"""``consul.control_plane: cluster``: the catalog read as a topology, the datacenter's Prometheus read with
Consul's stat names, and what a datacenter refuses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness._errors import FaultError, MeshError
from harness.mesh.consul import cluster
from harness.mesh.consul.driver import CAPABILITIES, CLUSTER_CAPABILITIES, ConsulMesh
from harness.mesh.consul.naming import ConsulNaming
from harness.mesh.intents import CertChange, HttpFault, ProcessSignal
from harness.metrics.consul_prometheus import ConsulViews, consul_labels
from harness.metrics.prometheus import SampleViews
from harness.model.environment import Environment

RECORDED = json.loads((Path(__file__).parent / "data" / "consul_prometheus.json").read_text())
NAMING = ConsulNaming({"web": ["v1"], "api": ["v1", "v2"], "search": ["v1"], "db": ["v1", "v2"]})


def environment(control_plane: str = "cluster", metrics: dict[str, Any] | None = None,
                gateway: dict[str, Any] | None = None, **consul: Any) -> Environment:
    spec: dict[str, Any] = {
        "mesh": "consul", "consul": {"control_plane": control_plane, **consul},
        "gateway": gateway or {"service": "web", "url": "http://127.0.0.1:8080"},
        "metrics": metrics or {"source": "prometheus", "url": "http://127.0.0.1:9090"},
        "services": [{"name": "web", "calls": [{"to": "api"}]},
                     {"name": "api", "versions": {"v1": {"replicas": 2}, "v2": {}}}]}
    return Environment.model_validate({"apiVersion": "harness/v1", "kind": "Environment",
                                       "metadata": {"name": "dc"}, "spec": spec})


# ----------------------------------------------------------------------------------- Prometheus names
@pytest.mark.parametrize("node", ["gateway", "web-v1-0", "api-v1-0"])
def test_prometheus_reads_what_the_admin_endpoint_reads(node: str) -> None:
    """Recorded from one real sidecar: its /metrics, read with Consul's labels put back together, gives the
    same quantities as its admin /stats; read as the local mesh's Prometheus is read, it does not."""
    recorded = RECORDED[node]
    consul, plain = ConsulViews(), SampleViews()
    for name, labels, value in recorded["prometheus"]:
        consul.add(node, name, labels, 1.0, value)
        plain.add(node, name, labels, 1.0, value)
    want = NAMING.read(recorded["admin"])
    assert want.upstream or want.listeners
    assert NAMING.read(consul.counters[node]) == want
    assert NAMING.read(plain.counters[node]) != want


def test_latency_buckets_land_on_the_upstream_listeners() -> None:
    views = ConsulViews()
    for name, labels, value in RECORDED["web-v1-0"]["prometheus"]:
        views.add("web-v1-0", name, labels, 1.0, value)
    names = set(views.buckets["web-v1-0"])
    assert "http.upstream.api.default.default.dc1.downstream_rq_time" in names
    assert all(re.search(NAMING.histogram_filter, n) for n in names)


def test_labels_without_consul_names_are_left_alone() -> None:
    labels = {"envoy_cluster_name": "local_app"}
    assert consul_labels(labels) is labels
    assert consul_labels({"envoy_http_conn_manager_prefix": "public_listener"}) == {
        "envoy_http_conn_manager_prefix": "public_listener"}


# ----------------------------------------------------------------------------------- the catalog
def sidecar(instance: str, node: str = "n1", meta: dict[str, str] | None = None, address: str = "10.0.0.2",
            **config: str) -> dict[str, Any]:
    return {"Node": node, "Address": "10.0.0.1", "ServiceKind": "connect-proxy", "ServiceID": f"{instance}-sidecar",
            "ServiceAddress": address, "ServicePort": 21000, "ServiceMeta": meta or {},
            "ServiceProxy": {"DestinationServiceID": instance, "Config": config}}


class Catalog:
    def __init__(self, connect: dict[str, list[dict[str, Any]]], entries: dict[tuple[str, str], dict[str, Any]],
                 services: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.connect, self.entries, self.services = connect, entries, services or {}

    def catalog_connect(self, service: str) -> list[dict[str, Any]]:
        return self.connect.get(service, [])

    def catalog_service(self, name: str) -> list[dict[str, Any]]:
        return self.services.get(name, [])

    def config_entry(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.entries.get((kind, name))

    def config_entries(self, kind: str) -> list[dict[str, Any]]:
        return [{"Kind": k, "Name": n, **e} for (k, n), e in self.entries.items() if k == kind]


class TestMetricsAddress:
    def test_its_own_bind_address(self) -> None:
        assert cluster.metrics_address(sidecar("a", envoy_prometheus_bind_addr="10.0.0.9:20200"), None) == \
            "10.0.0.9:20200"

    def test_a_wildcard_is_the_sidecars_address_then_its_nodes(self) -> None:
        entry = sidecar("a", envoy_prometheus_bind_addr="0.0.0.0:20200")
        assert cluster.metrics_address(entry, None) == "10.0.0.2:20200"
        entry["ServiceAddress"] = ""
        assert cluster.metrics_address(entry, None) == "10.0.0.1:20200"

    def test_ipv6_in_brackets(self) -> None:
        assert cluster.metrics_address(sidecar("a", address="fd00::2", envoy_prometheus_bind_addr="[::]:9102"),
                                       None) == "[fd00::2]:9102"
        assert cluster.metrics_address(sidecar("a", envoy_prometheus_bind_addr="[fd00::9]:9102"), None) == \
            "[fd00::9]:9102"

    def test_the_global_proxy_defaults_when_its_own_says_nothing(self) -> None:
        assert cluster.metrics_address(sidecar("a"), "0.0.0.0:9102") == "10.0.0.2:9102"
        assert cluster.metrics_address(sidecar("a"), None) is None


class TestSidecars:
    def test_versions_gateways_and_ids(self) -> None:
        catalog = Catalog(
            {"web": [sidecar("web-1", envoy_prometheus_bind_addr="0.0.0.0:20200")],
             "api": [sidecar("api-1", "n1", {"version": "v1"}, "10.0.0.3"),
                     sidecar("api-1", "n2", {"version": "v1"}, "10.0.0.4"),
                     sidecar("api-2", "n2", {"version": "v2"}, "10.0.0.4", envoy_prometheus_bind_addr="[::]:9103"),
                     {"ServiceKind": "", "ServiceID": "api-native"}]},  # native Connect: no Envoy to read
            {("ingress-gateway", "edge"): {"Listeners": [{"Port": 8080, "Services": [{"Name": "web"}]},
                                                         {"Port": 8081, "Services": [{"Name": "api"}]}]},
             ("ingress-gateway", "other"): {"Listeners": [{"Port": 9000, "Services": [{"Name": "api"}]}]},
             ("proxy-defaults", "global"): {"Config": {"envoy_prometheus_bind_addr": "0.0.0.0:9102"}}},
            {"edge": [{"Address": "10.0.0.5", "ServicePort": 8080, "ServiceProxy": {}}]})
        got = cluster.sidecars(catalog, environment())  # type: ignore[arg-type]
        assert [(s.id, s.service, s.version, s.metrics) for s in got] == [
            ("gateway", "gateway", "gateway", "10.0.0.5:9102"),
            ("api-2", "api", "v2", "10.0.0.4:9103"),  # [::] is the sidecar's own address
            ("n1/api-1", "api", "v1", "10.0.0.3:9102"),  # one ID on two agents: told apart by node
            ("n2/api-1", "api", "v1", "10.0.0.4:9102"),
            ("web-1", "web", "v1", "10.0.0.2:20200"),  # one version: no metadata needed
        ]
        assert got[0].listener_ports == {8080}  # its listener for api is not the gateway service's traffic

    def test_two_sidecars_on_one_prometheus_endpoint_are_refused(self) -> None:
        catalog = Catalog({"web": [sidecar("web-1")], "api": [sidecar("api-1", meta={"version": "v1"}),
                                                               sidecar("api-2", meta={"version": "v2"})]},
                          {("proxy-defaults", "global"): {"Config": {"envoy_prometheus_bind_addr": "0.0.0.0:9102"}}})
        with pytest.raises(MeshError, match=r"several sidecars of the datacenter name one Prometheus endpoint "
                                            r"\(10\.0\.0\.2:9102\)"):
            cluster.sidecars(catalog, environment())  # type: ignore[arg-type]

    def test_a_version_with_no_sidecar_and_an_unknown_version_are_named(self) -> None:
        catalog = Catalog({"web": [sidecar("web-1")], "api": [sidecar("api-1", meta={"version": "v9"})]}, {})
        with pytest.raises(MeshError) as caught:
            cluster.sidecars(catalog, environment())  # type: ignore[arg-type]
        message = str(caught.value)
        assert "the sidecar api-1-sidecar of api has version 'v9' (the environment declares v1, v2)" in message
        assert "no sidecar of api v1 in the catalog; no sidecar of api v2 in the catalog" in message


class TestToken:
    def test_read_from_the_variable_it_names(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DC_TOKEN", "s3cret")
        assert cluster.token(environment(token_env="DC_TOKEN").spec.consul) == "s3cret"
        assert cluster.token(environment().spec.consul) is None

    @pytest.mark.parametrize("value", ["s3cret\nX-Other: 1", "two words", "s\u00e9cret"])
    def test_a_token_no_header_can_carry_is_refused_without_showing_it(self, value: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DC_TOKEN", value)
        with pytest.raises(MeshError) as caught:
            cluster.token(environment(token_env="DC_TOKEN").spec.consul)
        assert "holds characters no HTTP header can carry" in str(caught.value)
        assert value.split(maxsplit=1)[0] not in str(caught.value)

    def test_surrounding_whitespace_is_no_part_of_it(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DC_TOKEN", " s3cret\n")
        assert cluster.token(environment(token_env="DC_TOKEN").spec.consul) == "s3cret"

    def test_named_and_not_set_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("DC_TOKEN", raising=False)
        with pytest.raises(MeshError, match=r"consul\.token_env names DC_TOKEN, which is not set"):
            cluster.token(environment(token_env="DC_TOKEN").spec.consul)


# ----------------------------------------------------------------------------------- what a datacenter refuses
class TestRefusals:
    def test_capabilities_follow_the_control_plane(self) -> None:
        assert ConsulMesh.capabilities_for(environment()) is CLUSTER_CAPABILITIES
        assert ConsulMesh.capabilities_for(environment("local")) is CAPABILITIES
        for kind in ("http-abort", "http-delay", "kill", "pause", "cert-rotation"):
            refusal = CLUSTER_CAPABILITIES.refusal(kind)
            assert refusal is not None
            assert "consul.control_plane: local" in refusal.reason
        assert CLUSTER_CAPABILITIES.refusal("traffic-shift") is None
        assert CLUSTER_CAPABILITIES.refusal("partition") is None

    @pytest.mark.parametrize("intent", [HttpFault("api", 30, abort_status=503), ProcessSignal("api", "kill"),
                                        CertChange((), what="ca")])
    def test_prepare_refuses_before_reading_the_datacenter(self, intent: Any, tmp_path: Path) -> None:
        mesh = ConsulMesh(environment(address="http://127.0.0.1:9"), tmp_path / "env.yaml", tmp_path)
        with pytest.raises(FaultError, match=r"the consul mesh cannot do .*: in a datacenter"):
            mesh.prepare(intent)

    def test_environment(self) -> None:
        assert ConsulMesh.refused_environment(environment()) == []
        blind = environment(metrics={"source": "envoy"}, gateway={"service": "web"})
        assert [where for where, _ in ConsulMesh.refused_environment(blind)] == [("metrics",), ("gateway",)]
        local = environment("local", metrics={"source": "prometheus"})
        assert [where for where, _ in ConsulMesh.refused_environment(local)] == [("metrics", "source")]


# ----------------------------------------------------------------------------------- routers, naming, pushes
def test_a_policy_override_keeps_the_rest_of_a_datacenters_router() -> None:
    """Only the catch-all route's retries and timeout are the harness's to set: other routes, and the rest of that
    route's destination, stay as the datacenter's operators wrote them."""
    from harness.mesh.consul import entries
    from harness.mesh.consul.driver import CONSUL_DEFAULTS
    from harness.mesh.policy import resolve
    from harness.model.environment import EdgePolicy

    routes: list[dict[str, Any]] = [
        {"Match": {"HTTP": {"PathPrefix": "/admin"}}, "Destination": {"Service": "admin", "NumRetries": 9}},
        {"Match": {"HTTP": {"PathPrefix": "/"}}, "Destination": {"ServiceSubset": "v1", "NumRetries": 1,
                                                                  "RequestTimeout": "9s"}}]
    theirs: dict[str, Any] = {"Kind": "service-router", "Name": "api", "ModifyIndex": 7, "Routes": routes}
    policy = resolve(EdgePolicy.model_validate({"retries": {"attempts": 2, "on": ["5xx"]}, "timeout": "3s"}),
                     CONSUL_DEFAULTS)
    got = entries.router_with(theirs, "api", policy)
    assert got["Routes"][0] == routes[0]
    assert got["Routes"][1]["Destination"] == {"ServiceSubset": "v1", "NumRetries": 2, "RetryOn": ["5xx"],
                                               "RequestTimeout": "3s"}
    assert "ModifyIndex" not in got
    no_catch_all = {**theirs, "Routes": routes[:1]}
    assert entries.router_with(no_catch_all, "api", policy)["Routes"][1] == entries.router("api", policy)["Routes"][0]
    assert entries.router_with(None, "api", policy) == entries.router("api", policy)


def test_only_the_gateway_services_ingress_listeners_are_the_gateways() -> None:
    naming = ConsulNaming({"web": ["v1"]}, (), ingress_ports={8080})
    assert naming.listener("ingress_upstream_8080") is not None
    assert naming.listener("ingress_upstream_8081") is None
    assert ConsulNaming({"web": ["v1"]}).listener("ingress_upstream_8081") is not None


class FakeProm:
    """Prometheus answering ``sum by (instance)`` queries from a script of answers per metric family."""

    def __init__(self, marks: list[dict[str, float] | None], draining: list[dict[str, float]]) -> None:
        self.marks, self.draining, self.queries = marks, draining, 0

    def custom_query(self, query: str) -> list[dict[str, Any]]:
        self.queries += 1
        script = self.draining if "draining" in query else self.marks
        now = script.pop(0) if len(script) > 1 else script[0]
        if now is None:
            raise ConnectionError("Prometheus is restarting")
        return [{"metric": {"instance": i}, "value": [0, str(v)]} for i, v in now.items()]

    def close(self) -> None:
        pass


def push_watch(monkeypatch: pytest.MonkeyPatch, prom: FakeProm) -> cluster.PushWatch:
    monkeypatch.setattr(cluster, "prometheus_client", lambda url: prom)
    monkeypatch.setattr("harness.mesh.consul.cluster.time.sleep", lambda s: None)
    watch = cluster.PushWatch("http://prom", {"a": "10.0.0.1:9102", "b": "10.0.0.2:9102"}, 1.0)
    watch.timeout_s = 0.05
    return watch


class TestPushWatch:
    def test_waits_for_an_accepted_update_and_no_draining(self, monkeypatch: pytest.MonkeyPatch) -> None:
        prom = FakeProm([{"10.0.0.1:9102": 5, "10.0.0.2:9102": 3}, {"10.0.0.1:9102": 6, "10.0.0.2:9102": 3},
                         {"10.0.0.1:9102": 6, "10.0.0.2:9102": 4}],
                        [{"10.0.0.1:9102": 1}, {"10.0.0.1:9102": 0}])
        watch = push_watch(monkeypatch, prom)
        before = watch.marks(["a", "b", "not-scraped"])
        assert before == {"a": 5.0, "b": 3.0}
        watch.wait(before)
        assert prom.marks == [{"10.0.0.1:9102": 6, "10.0.0.2:9102": 4}]

    def test_a_moment_without_prometheus_is_waited_out(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An undo written while the datacenter's Prometheus restarts is not reported undone for that."""
        watch = push_watch(monkeypatch, FakeProm([None, {"10.0.0.1:9102": 6}], [{}]))
        watch.timeout_s = 5.0
        watch.wait({"a": 5.0})

    def test_a_prometheus_that_stays_away_is_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        watch = push_watch(monkeypatch, FakeProm([None], [{}]))
        with pytest.raises(FaultError, match=r"the datacenter's Prometheus did not answer \(ConnectionError"):
            watch.wait({"a": 5.0})

    def test_a_sidecar_that_never_takes_it_is_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        watch = push_watch(monkeypatch, FakeProm([{"10.0.0.1:9102": 5, "10.0.0.2:9102": 3}], [{}]))
        with pytest.raises(FaultError, match=r"the change did not reach a, b within"):
            watch.wait({"a": 5.0, "b": 3.0})

    def test_one_still_draining_is_named_with_why(self, monkeypatch: pytest.MonkeyPatch) -> None:
        watch = push_watch(monkeypatch, FakeProm([{"10.0.0.1:9102": 6}], [{"10.0.0.1:9102": 2}]))
        with pytest.raises(FaultError, match=r"a still drain the connections .* --drain-time-s"):
            watch.wait({"a": 5.0})


def test_a_brace_in_why_the_datacenter_did_not_answer_is_no_crash(tmp_path: Path) -> None:
    from harness.mesh.consul.driver import OfflineAPI

    offline = OfflineAPI([], "Consul refused it (502): <style>body {color: red}</style>; {what} needs the datacenter")
    with pytest.raises(MeshError, match=r"body \{color: red\}.*; writing x needs the datacenter"):
        offline._request("PUT", "/v1/config", "writing x")


def test_up_refuses_what_it_cannot_hold_at_its_line_before_anything(tmp_path: Path) -> None:
    from harness._errors import InputError

    env_file = tmp_path / "env.yaml"
    env_file.write_text("""\
apiVersion: harness/v1
kind: Environment
metadata: {name: c}
spec:
  mesh: consul
  consul: {control_plane: local}
  gateway: {service: web, port: 0}
  services:
    - name: web
      calls: [{to: api, retries: {attempts: 2, on: [5xx], per_try_timeout: 1s}}]
    - name: api
  metrics: {source: prometheus}
""")
    from harness.model.loader import load_environment

    mesh = ConsulMesh(load_environment(env_file).model, env_file, tmp_path / "state")
    with pytest.raises(InputError) as caught:
        mesh.up()
    assert [f"{p.line}" for p in caught.value.problems] == ["10", "12"]
    assert not (tmp_path / "state").exists()


def test_the_gateway_edge_reads_its_ingress_gateways_limits(tmp_path: Path) -> None:
    """A datacenter's ingress gateway can hold limits and a passive health check for its services (its entry's
    Defaults, and each listener service's own over them): the gateway's edge is judged against them."""
    from harness.mesh.consul.driver import OfflineAPI
    from harness.mesh.local.topology import GATEWAY_ID

    gateway = {"Kind": "ingress-gateway", "Name": "edge",
               "Defaults": {"MaxConnections": 10, "MaxPendingRequests": 0,
                            "PassiveHealthCheck": {"MaxFailures": 3, "Interval": 2_000_000_000}},
               "Listeners": [{"Port": 8080, "Protocol": "http",
                              "Services": [{"Name": "web", "MaxConcurrentRequests": 7}]}]}
    mesh = ConsulMesh(environment(), tmp_path / "env.yaml", tmp_path)
    policy = mesh._policy_from(OfflineAPI([gateway], "{what}"), GATEWAY_ID, "web")
    assert (policy.max_connections, policy.max_pending, policy.max_requests) == (10, 1024, 7)
    assert policy.outlier is not None
    assert (policy.outlier.consecutive_5xx, policy.outlier.interval_s) == (3, 2.0)
    bare = mesh._policy_from(OfflineAPI([{**gateway, "Defaults": {}, "Listeners": [
        {"Port": 8080, "Services": [{"Name": "web"}]}]}], "{what}"), GATEWAY_ID, "web")
    assert (bare.max_connections, bare.max_requests) == (1024, 1024)
    assert "outlier_detection" in bare.defaulted
