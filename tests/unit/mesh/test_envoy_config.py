"""The Envoy configuration the local mesh renders, and the policy resolution behind it.

No Envoy runs here: these tests read the CDS/LDS dicts and check that every value a user declared, and
every default the harness promises to make explicit, is where Envoy will read it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from harness.mesh.local import envoy_config as ec
from harness.mesh.local.topology import Instance, Layout, build_layout
from harness.mesh.policy import LOCAL_DEFAULTS, ResolvedPolicy, merge_policy, resolve
from harness.model.environment import Call, EdgePolicy, Environment

__all__: list[str] = []

TRUST = "harness.local"


def environment(mtls: str = "strict", **overrides: Any) -> Environment:
    """The bundled demo's topology, with declared policies on two edges."""
    spec: dict[str, Any] = {
        "mesh": "local",
        "gateway": {"service": "productpage", "port": 0},
        "mtls": mtls,
        "services": [
            {"name": "productpage", "calls": [
                {"to": "details", "optional": True, "timeout": "2s"},
                {"to": "reviews", "retries": {"attempts": 2, "on": ["5xx"], "per_try_timeout": "1s"},
                 "timeout": "3s"},
            ]},
            {"name": "details"},
            {"name": "reviews", "versions": {"v1": {}, "v2": {}, "v3": {}}, "split": {"v1": 34, "v2": 33, "v3": 33},
             "calls": [{"to": "ratings",
                        "circuit_breaker": {"max_connections": 100, "max_pending": 90, "max_requests": 80,
                                            "max_retries": 7},
                        "outlier_detection": {"consecutive_5xx": 5, "interval": "1s", "base_ejection_time": "10s",
                                              "max_ejection_percent": 50}}]},
            {"name": "ratings", "versions": {"v1": {"replicas": 2}}},
        ],
        **overrides,
    }
    return Environment.model_validate({"apiVersion": "harness/v1", "kind": "Environment",
                                       "metadata": {"name": "t"}, "spec": spec})


class Rendered:
    """CDS and LDS of one Envoy, rendered the way the driver renders them (declared policies, no overrides)."""

    def __init__(self, env: Environment, layout: Layout, inst: Instance | None, sds_dir: Path,
                 policies: dict[str, ResolvedPolicy] | None = None,
                 weights: dict[str, dict[str, float]] | None = None) -> None:
        spec = env.spec
        caller = inst.service if inst else "gateway"
        callees = list(inst.outbound_ports) if inst else [spec.gateway.service]
        self.policies = policies or {
            c: resolve(spec.call(caller, c)) if inst else resolve(None) for c in callees}
        self.weights = weights or {c: spec.service(c).effective_split() for c in callees}
        versions = {c: list(spec.service(c).versions) for c in callees}
        self.clusters = ec.clusters(inst, layout, callees, versions, self.policies, spec.mtls, sds_dir, TRUST)
        self.listeners = ec.listeners(inst, layout, self.weights, self.policies, spec.mtls, sds_dir, TRUST,
                                      spec.gateway.service)
        self.routes = ec.routes(inst, self.weights, self.policies, spec.gateway.service)

    def cluster(self, name: str) -> dict[str, Any]:
        return next(c for c in self.clusters if c["name"] == name)

    def listener(self, name: str) -> dict[str, Any]:
        return next(x for x in self.listeners if x["name"] == name)

    def route(self, listener: str) -> dict[str, Any]:
        """The one route of ``listener``: read over RDS, from the route configuration its HCM names."""
        hcm = self.listener(listener)["filter_chains"][0]["filters"][0]["typed_config"]
        name = hcm["rds"]["route_config_name"]
        assert hcm["rds"]["config_source"]["path_config_source"]["path"].endswith(f"rds_{name}.json")
        routes = self.routes[name]["virtual_hosts"][0]["routes"]
        assert len(routes) == 1
        return dict(routes[0]["route"])


def secs(value: str) -> float:
    """A protobuf JSON duration ('1.500s') in seconds; anything else is a rendering error."""
    assert re.fullmatch(r"-?\d+(\.\d{1,9})?s", value), value
    return float(value[:-1])


def walk(node: Any) -> Iterator[Any]:
    """Every dict and list inside a rendered document, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def hcms(listeners: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n["typed_config"] for n in walk(listeners)
            if isinstance(n, dict) and n.get("name") == "envoy.filters.network.http_connection_manager"]


@pytest.fixture(scope="module")
def env() -> Environment:
    return environment()


@pytest.fixture(scope="module")
def layout(env: Environment) -> Layout:
    return build_layout(env, 100000)


@pytest.fixture(scope="module")
def sds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("node") / "sds"


@pytest.fixture(scope="module")
def productpage(env: Environment, layout: Layout, sds: Path) -> Rendered:
    return Rendered(env, layout, layout.of("productpage")[0], sds)


@pytest.fixture(scope="module")
def reviews(env: Environment, layout: Layout, sds: Path) -> Rendered:
    return Rendered(env, layout, layout.of("reviews", "v2")[0], sds)


@pytest.fixture(scope="module")
def gateway(env: Environment, layout: Layout, sds: Path) -> Rendered:
    return Rendered(env, layout, None, sds)


def every_node(env: Environment, layout: Layout, sds: Path) -> list[Rendered]:
    return [Rendered(env, layout, i, sds) for i in layout.instances] + [Rendered(env, layout, None, sds)]


# ------------------------------------------------------------------------------------ policy resolve
class TestResolve:
    def test_nothing_declared_gives_explicit_local_defaults(self) -> None:
        """No policy: no retries, 15s timeout, 1024 for every breaker threshold, no outlier detection."""
        p = resolve(None)
        assert (p.retries, p.timeout_s, p.outlier, p.per_try_timeout_s) == (0, 15.0, None, None)
        assert (p.max_connections, p.max_pending, p.max_requests, p.max_retries) == (1024, 1024, 1024, 1024)
        assert set(p.defaulted) >= {"retries", "timeout", "circuit_breaker.max_retries", "outlier_detection"}

    def test_local_defaults_never_use_envoys_three_retries(self) -> None:
        """The retry breaker default is raised from Envoy's implicit 3 to 1024."""
        assert LOCAL_DEFAULTS.max_retries == 1024
        assert resolve(EdgePolicy()).max_retries == 1024

    def test_declared_values_win_and_are_not_marked_defaulted(self) -> None:
        """Declared retries/timeout/breaker values are used as written."""
        call = Call.model_validate({"to": "x", "retries": {"attempts": 3, "on": ["gateway-error"],
                                                           "per_try_timeout": "250ms"},
                                    "timeout": "2s", "circuit_breaker": {"max_retries": 5}})
        p = resolve(call)
        assert (p.retries, p.retry_on, p.per_try_timeout_s, p.timeout_s) == (3, ("gateway-error",), 0.25, 2.0)
        assert p.max_retries == 5
        assert p.max_connections == 1024
        assert "retries" not in p.defaulted
        assert "timeout" not in p.defaulted
        assert "circuit_breaker.max_retries" not in p.defaulted
        assert "circuit_breaker.max_connections" in p.defaulted

    def test_partial_outlier_detection_takes_envoy_defaults(self) -> None:
        """Fields left out of outlier_detection get Envoy's documented defaults (5, 10s, 30s, 10%)."""
        p = resolve(EdgePolicy.model_validate({"outlier_detection": {"consecutive_5xx": 3}}))
        assert p.outlier is not None
        assert (p.outlier.consecutive_5xx, p.outlier.interval_s, p.outlier.base_ejection_time_s,
                p.outlier.max_ejection_percent) == (3, 10.0, 30.0, 10.0)

    def test_merge_replaces_only_named_fields(self) -> None:
        """An experiment override of retries keeps the declared timeout and breaker."""
        declared = Call.model_validate({"to": "x", "retries": {"attempts": 2}, "timeout": "3s",
                                        "circuit_breaker": {"max_requests": 9}})
        merged = resolve(merge_policy(declared, EdgePolicy.model_validate({"retries": {"attempts": 0}})))
        assert (merged.retries, merged.timeout_s, merged.max_requests) == (0, 3.0, 9)

    def test_merge_without_override_is_the_declared_policy(self) -> None:
        """merge_policy(declared, None) resolves like the declared policy itself."""
        declared = Call.model_validate({"to": "x", "retries": {"attempts": 2}, "timeout": "3s"})
        assert resolve(merge_policy(declared, None)) == resolve(declared)


# --------------------------------------------------------------------------------------- clusters
class TestClusters:
    def test_every_cluster_has_explicit_breaker_thresholds(self, env: Environment, layout: Layout,
                                                           sds: Path) -> None:
        """Every cluster of every Envoy carries all four thresholds, so no Envoy default (3 retries) applies."""
        for node in every_node(env, layout, sds):
            for cluster in node.clusters:
                thresholds = cluster["circuit_breakers"]["thresholds"]
                assert len(thresholds) == 1
                assert thresholds[0]["priority"] == "DEFAULT"
                for key in ("max_connections", "max_pending_requests", "max_requests", "max_retries"):
                    value = thresholds[0][key]
                    assert isinstance(value, int), (cluster["name"], key)
                    assert value > 3, (cluster["name"], key)

    def test_undeclared_edge_gets_1024(self, productpage: Rendered) -> None:
        """productpage->reviews declares no breaker: 1024 everywhere."""
        t = productpage.cluster("out_reviews_v1")["circuit_breakers"]["thresholds"][0]
        assert (t["max_connections"], t["max_pending_requests"], t["max_requests"], t["max_retries"]) == (
            1024, 1024, 1024, 1024)

    def test_declared_breaker_values_appear(self, reviews: Rendered) -> None:
        """reviews->ratings declares 100/90/80/7 and the cluster says so."""
        t = reviews.cluster("out_ratings_v1")["circuit_breakers"]["thresholds"][0]
        assert (t["max_connections"], t["max_pending_requests"], t["max_requests"], t["max_retries"]) == (
            100, 90, 80, 7)

    def test_declared_outlier_detection_appears(self, reviews: Rendered) -> None:
        """reviews->ratings' outlier detection is rendered with its values and consecutive-5xx enforcement."""
        od = reviews.cluster("out_ratings_v1")["outlier_detection"]
        assert od["consecutive_5xx"] == 5
        assert secs(od["interval"]) == 1.0
        assert secs(od["base_ejection_time"]) == 10.0
        assert od["max_ejection_percent"] == 50
        assert od["enforcing_consecutive_5xx"] == 100

    def test_max_ejection_percent_is_an_integer_envoy_accepts(self, env: Environment, layout: Layout,
                                                              sds: Path) -> None:
        """A fractional max_ejection_percent is refused by the model, or rendered as an integer."""
        try:
            pol = resolve(EdgePolicy.model_validate({"outlier_detection": {"max_ejection_percent": 12.5}}))
        except ValidationError:
            return
        node = Rendered(env, layout, layout.of("reviews", "v1")[0], sds, policies={"ratings": pol})
        assert isinstance(node.cluster("out_ratings_v1")["outlier_detection"]["max_ejection_percent"], int)

    def test_no_outlier_detection_unless_declared(self, productpage: Rendered) -> None:
        """Edges without outlier_detection get none (Envoy's default is off)."""
        assert all("outlier_detection" not in c for c in productpage.clusters)

    def test_one_cluster_per_callee_version(self, productpage: Rendered, reviews: Rendered) -> None:
        """productpage has inbound_app plus one cluster per version of details and reviews."""
        assert {c["name"] for c in productpage.clusters} == {
            "inbound_app", "out_details_v1", "out_reviews_v1", "out_reviews_v2", "out_reviews_v3"}
        assert {c["name"] for c in reviews.clusters} == {"inbound_app", "out_ratings_v1"}

    def test_cluster_endpoints_are_the_callees_inbound_ports(self, layout: Layout, reviews: Rendered) -> None:
        """out_ratings_v1 lists the inbound (sidecar) port of each ratings replica, not the app port."""
        eps = reviews.cluster("out_ratings_v1")["load_assignment"]["endpoints"][0]["lb_endpoints"]
        ports = sorted(e["endpoint"]["address"]["socket_address"]["port_value"] for e in eps)
        assert ports == sorted(i.inbound_port for i in layout.of("ratings", "v1"))
        assert len(ports) == 2

    def test_inbound_app_points_at_the_local_app(self, layout: Layout, reviews: Rendered) -> None:
        """inbound_app's one endpoint is this instance's app port."""
        eps = reviews.cluster("inbound_app")["load_assignment"]["endpoints"][0]["lb_endpoints"]
        assert [e["endpoint"]["address"]["socket_address"]["port_value"] for e in eps] == [
            layout.of("reviews", "v2")[0].app_port]

    def test_upstream_tls_verifies_the_callees_identity(self, reviews: Rendered) -> None:
        """With mTLS the upstream TLS context pins the callee's SPIFFE id and sets SNI."""
        ts = reviews.cluster("out_ratings_v1")["transport_socket"]["typed_config"]
        assert ts["@type"] == ec.UPSTREAM_TLS
        assert ts["sni"] == "ratings"
        match = ts["common_tls_context"]["combined_validation_context"]["default_validation_context"][
            "match_typed_subject_alt_names"]
        assert match == [{"san_type": "URI", "matcher": {"exact": f"spiffe://{TRUST}/ns/default/sa/ratings"}}]

    def test_plain_clusters_when_mtls_is_off(self, sds: Path) -> None:
        """mtls: off renders clusters without a transport socket."""
        env = environment("off")
        node = Rendered(env, build_layout(env, 100000), None, sds)
        assert all("transport_socket" not in c for c in node.clusters)


# ----------------------------------------------------------------------------------------- routes
class TestRoutes:
    def test_route_with_retries(self, productpage: Rendered) -> None:
        """productpage->reviews: retry_on 5xx, num_retries 2, per_try_timeout 1s, route timeout 3s."""
        route = productpage.route("outbound_reviews")
        assert secs(route["timeout"]) == 3.0
        retry = route["retry_policy"]
        assert set(retry) == {"retry_on", "num_retries", "per_try_timeout"}
        assert (retry["retry_on"], retry["num_retries"], secs(retry["per_try_timeout"])) == ("5xx", 2, 1.0)

    def test_route_without_retries_has_no_retry_policy(self, productpage: Rendered) -> None:
        """productpage->details declares no retries: no retry_policy, its own 2s timeout."""
        route = productpage.route("outbound_details")
        assert "retry_policy" not in route
        assert secs(route["timeout"]) == 2.0

    def test_default_timeout_is_explicit(self, reviews: Rendered) -> None:
        """reviews->ratings declares no timeout: the explicit 15s default is written."""
        assert secs(reviews.route("outbound_ratings")["timeout"]) == 15.0

    def test_sub_millisecond_durations_do_not_become_zero(self, env: Environment, layout: Layout,
                                                          sds: Path) -> None:
        """timeout/per_try_timeout of 100us (a legal duration) never render as 0, Envoy's 'disabled'."""
        pol = resolve(EdgePolicy.model_validate({"timeout": "100us",
                                                 "retries": {"attempts": 1, "per_try_timeout": "100us"}}))
        node = Rendered(env, layout, layout.of("reviews", "v1")[0], sds, policies={"ratings": pol})
        route = node.route("outbound_ratings")
        for value in (route["timeout"], route["retry_policy"]["per_try_timeout"]):
            assert secs(value) == pytest.approx(1e-4), value

    def test_numeric_retry_codes_become_retriable_status_codes(self, env: Environment, layout: Layout,
                                                               sds: Path) -> None:
        """on: [gateway-error, '503', '429'] renders retriable-status-codes with [503, 429]."""
        pol = resolve(EdgePolicy.model_validate({"retries": {"attempts": 1, "on": ["gateway-error", "503", "429"]}}))
        node = Rendered(env, layout, layout.of("reviews", "v1")[0], sds, policies={"ratings": pol})
        retry = node.route("outbound_ratings")["retry_policy"]
        assert retry["retry_on"].split(",") == ["gateway-error", "retriable-status-codes"]
        assert retry["retriable_status_codes"] == [503, 429]
        assert "per_try_timeout" not in retry

    def test_only_codes_still_name_the_condition_once(self, env: Environment, layout: Layout, sds: Path) -> None:
        """on: ['503', retriable-status-codes] names retriable-status-codes exactly once."""
        pol = resolve(EdgePolicy.model_validate({"retries": {"attempts": 1,
                                                             "on": ["503", "retriable-status-codes"]}}))
        node = Rendered(env, layout, layout.of("reviews", "v1")[0], sds, policies={"ratings": pol})
        retry = node.route("outbound_ratings")["retry_policy"]
        assert retry["retry_on"] == "retriable-status-codes"
        assert retry["retriable_status_codes"] == [503]

    def test_weights_follow_the_split(self, productpage: Rendered) -> None:
        """A 34/33/33 split renders weights 3400/3300/3300 on the reviews clusters."""
        clusters = productpage.route("outbound_reviews")["weighted_clusters"]["clusters"]
        assert {c["name"]: c["weight"] for c in clusters} == {
            "out_reviews_v1": 3400, "out_reviews_v2": 3300, "out_reviews_v3": 3300}

    def test_weights_of_a_changed_split(self, env: Environment, layout: Layout, sds: Path) -> None:
        """A traffic shift to 90/10/0 renders 9000/1000/0."""
        node = Rendered(env, layout, layout.of("productpage")[0], sds,
                        weights={"details": {"v1": 100.0}, "reviews": {"v1": 90.0, "v2": 10.0, "v3": 0.0}})
        clusters = node.route("outbound_reviews")["weighted_clusters"]["clusters"]
        assert [c["weight"] for c in clusters] == [9000, 1000, 0]

    def test_fractional_split_keeps_its_precision(self, env: Environment, layout: Layout, sds: Path) -> None:
        """A 99.5/0.5 split renders 9950/50 (weights are hundredths of a percent)."""
        node = Rendered(env, layout, layout.of("productpage")[0], sds,
                        weights={"details": {"v1": 100.0}, "reviews": {"v1": 99.5, "v2": 0.5}})
        clusters = node.route("outbound_reviews")["weighted_clusters"]["clusters"]
        assert [c["weight"] for c in clusters] == [9950, 50]

    def test_gateway_routes_to_the_gateway_service(self, gateway: Rendered, layout: Layout) -> None:
        """The gateway listener is on the gateway port and routes to productpage's clusters."""
        listener = gateway.listener("gateway")
        assert listener["address"]["socket_address"]["port_value"] == layout.gateway_port
        clusters = gateway.route("gateway")["weighted_clusters"]["clusters"]
        assert [c["name"] for c in clusters] == ["out_productpage_v1"]


# -------------------------------------------------------------------------------------- listeners
class TestListeners:
    def test_every_socket_address_is_loopback(self, env: Environment, layout: Layout, sds: Path) -> None:
        """Every address in every rendered document (and the bootstrap) is 127.0.0.1."""
        docs: list[Any] = [ec.bootstrap("n", "c", 9901, sds.parent / "xds")]
        for mtls in ("strict", "permissive", "off"):
            e = environment(mtls)
            docs += [(n.clusters, n.listeners) for n in every_node(e, layout, sds)]
        addresses = [n["socket_address"]["address"] for n in walk(docs) if isinstance(n, dict) and
                     "socket_address" in n]
        assert addresses
        assert set(addresses) == {"127.0.0.1"}

    def test_ports_are_the_layouts(self, layout: Layout, productpage: Rendered) -> None:
        """A sidecar listens inbound on its inbound port and outbound on one port per callee."""
        inst = layout.of("productpage")[0]
        ports = {x["name"]: x["address"]["socket_address"]["port_value"] for x in productpage.listeners}
        assert ports == {"inbound": inst.inbound_port, "outbound_details": inst.outbound_ports["details"],
                         "outbound_reviews": inst.outbound_ports["reviews"]}

    def test_strict_mtls_requires_client_certificates(self, reviews: Rendered) -> None:
        """strict: one TLS filter chain that requires a client certificate from the trust domain; no plain chain."""
        inbound = reviews.listener("inbound")
        assert len(inbound["filter_chains"]) == 1
        assert "default_filter_chain" not in inbound
        ts = inbound["filter_chains"][0]["transport_socket"]["typed_config"]
        assert ts["@type"] == ec.DOWNSTREAM_TLS
        assert ts["require_client_certificate"] is True
        match = ts["common_tls_context"]["combined_validation_context"]["default_validation_context"][
            "match_typed_subject_alt_names"]
        assert match == [{"san_type": "URI", "matcher": {"prefix": f"spiffe://{TRUST}/"}}]

    def test_permissive_mtls_accepts_both(self, layout: Layout, sds: Path) -> None:
        """permissive: TLS inspector, a TLS chain matched on transport 'tls', and a plain default chain."""
        env = environment("permissive")
        node = Rendered(env, layout, layout.of("reviews", "v1")[0], sds)
        inbound = node.listener("inbound")
        assert [f["name"] for f in inbound["listener_filters"]] == ["envoy.filters.listener.tls_inspector"]
        (tls_chain,) = inbound["filter_chains"]
        assert tls_chain["filter_chain_match"] == {"transport_protocol": "tls"}
        assert tls_chain["transport_socket"]["typed_config"]["require_client_certificate"] is True
        assert "transport_socket" not in inbound["default_filter_chain"]
        assert inbound["default_filter_chain"]["filters"][0]["typed_config"]["stat_prefix"] == "inbound"

    def test_mtls_off_is_plain(self, layout: Layout, sds: Path) -> None:
        """off: one plain chain, no TLS inspector, no transport sockets anywhere."""
        env = environment("off")
        node = Rendered(env, layout, layout.of("reviews", "v1")[0], sds)
        inbound = node.listener("inbound")
        assert len(inbound["filter_chains"]) == 1
        assert "transport_socket" not in inbound["filter_chains"][0]
        assert "listener_filters" not in inbound
        assert not [n for n in walk(node.listeners) if isinstance(n, dict) and "transport_socket" in n]

    def test_outbound_listeners_are_plain_in_every_mode(self, layout: Layout, sds: Path) -> None:
        """The app talks plain HTTP to its own sidecar: outbound and gateway listeners never have TLS."""
        for mtls in ("strict", "permissive", "off"):
            env = environment(mtls)
            for node in every_node(env, layout, sds):
                for listener in node.listeners:
                    if listener["name"] != "inbound":
                        assert all("transport_socket" not in ch for ch in listener["filter_chains"])

    def test_stat_prefixes_follow_the_naming_contract(self, productpage: Rendered, gateway: Rendered) -> None:
        """HCM stat prefixes are inbound, outbound_<callee> and gateway (the metric source parses them)."""
        assert sorted(h["stat_prefix"] for h in hcms(productpage.listeners)) == [
            "inbound", "outbound_details", "outbound_reviews"]
        assert [h["stat_prefix"] for h in hcms(gateway.listeners)] == ["gateway"]

    def test_outbound_routes_count_attempts(self, productpage: Rendered, gateway: Rendered) -> None:
        """Outbound and gateway virtual hosts send x-envoy-attempt-count (the retries oracle reads it)."""
        for node, names in ((productpage, ["outbound_details", "outbound_reviews"]), (gateway, ["gateway"])):
            for name in names:
                assert node.routes[name]["virtual_hosts"][0]["include_request_attempt_count"] is True


# ----------------------------------------------------------------------------------- fault filters
class TestFaultFilters:
    def test_fault_filter_precedes_the_router(self, env: Environment, layout: Layout, sds: Path) -> None:
        """In every HCM the fault filter comes first and the router last."""
        for node in every_node(env, layout, sds):
            for hcm in hcms(node.listeners):
                names = [f["name"] for f in hcm["http_filters"]]
                assert names == ["envoy.filters.http.fault", "envoy.filters.http.router"]

    def test_fault_filters_are_off_until_runtime_says_otherwise(self, productpage: Rendered) -> None:
        """Configured percentages are 0 (over a million): only runtime keys switch a fault on."""
        for hcm in hcms(productpage.listeners):
            fault = hcm["http_filters"][0]["typed_config"]
            assert fault["abort"]["percentage"] == {"numerator": 0, "denominator": "MILLION"}
            assert fault["delay"]["percentage"] == {"numerator": 0, "denominator": "MILLION"}

    def test_runtime_keys_are_unique_per_scope(self, env: Environment, layout: Layout, sds: Path) -> None:
        """Within one Envoy, no two fault filters share a runtime key, and each key names its scope."""
        for node in every_node(env, layout, sds):
            keys: list[str] = []
            for hcm in hcms(node.listeners):
                fault = hcm["http_filters"][0]["typed_config"]
                own = [fault[k] for k in ("abort_percent_runtime", "abort_http_status_runtime",
                                          "delay_percent_runtime", "delay_duration_runtime")]
                scope = "inbound" if hcm["stat_prefix"] == "inbound" else (
                    "out." + hcm["stat_prefix"].removeprefix("outbound_") if hcm["stat_prefix"] != "gateway"
                    else f"out.{env.spec.gateway.service}")
                assert own == [ec.fault_runtime_keys(scope)[s] for s in ec.FAULT_KEYS]
                keys += own
            assert len(keys) == len(set(keys))

    def test_runtime_key_names(self) -> None:
        """fault_runtime_keys spells harness.fault.<scope>.<suffix> for the four suffixes."""
        assert ec.fault_runtime_keys("out.reviews") == {
            "abort.percent": "harness.fault.out.reviews.abort.percent",
            "abort.status": "harness.fault.out.reviews.abort.status",
            "delay.percent": "harness.fault.out.reviews.delay.percent",
            "delay.ms": "harness.fault.out.reviews.delay.ms",
        }


# ---------------------------------------------------------------------------------------- bootstrap
class TestBootstrap:
    def test_bootstrap_reads_xds_from_files(self, tmp_path: Path) -> None:
        """CDS, LDS and the RTDS layer come from files watched in the xds directory."""
        boot = ec.bootstrap("reviews-v1-0", "reviews", 9901, tmp_path / "xds")
        assert boot["node"] == {"id": "reviews-v1-0", "cluster": "reviews"}
        assert boot["dynamic_resources"]["cds_config"]["path_config_source"]["path"] == str(tmp_path / "xds/cds.json")
        assert boot["dynamic_resources"]["lds_config"]["path_config_source"]["watched_directory"] == {
            "path": str(tmp_path / "xds")}
        layers = [layer["name"] for layer in boot["layered_runtime"]["layers"]]
        assert layers == ["static", "rtds", "admin"]

    def test_runtime_file_holds_one_layer(self) -> None:
        """runtime_file wraps a layer in one Runtime resource with its version."""
        doc = ec.runtime_file({"harness.fault.inbound.abort.percent": 5}, 7)
        assert doc["version_info"] == "7"
        (res,) = doc["resources"]
        assert res["name"] == ec.RTDS_LAYER
        assert res["layer"] == {"harness.fault.inbound.abort.percent": 5}

    def test_secret_files_watch_their_directories(self, tmp_path: Path) -> None:
        """The leaf and trust SDS files watch the directories of their certificate files."""
        docs = ec.secret_files(tmp_path / "leaf/..data/cert.pem", tmp_path / "leaf/..data/key.pem",
                               tmp_path / "trust/..data/ca.pem")
        leaf = docs["leaf.json"]["resources"][0]["tls_certificate"]
        assert leaf["watched_directory"] == {"path": str(tmp_path / "leaf/..data")}
        trust = docs["trust.json"]["resources"][0]["validation_context"]
        assert trust["trusted_ca"] == {"filename": str(tmp_path / "trust/..data/ca.pem")}


# ------------------------------------------------------------------------------------------ layout
class TestLayout:
    def test_every_port_is_distinct(self, layout: Layout) -> None:
        """App, inbound, admin and outbound ports of every instance and the gateway never collide."""
        ports = [layout.gateway_port, layout.gateway_admin_port]
        for inst in layout.instances:
            ports += [inst.app_port, inst.inbound_port, inst.admin_port, *inst.outbound_ports.values()]
        assert len(ports) == len(set(ports))
        assert all(p > 0 for p in ports)

    def test_instances_expand_versions_and_replicas(self, layout: Layout) -> None:
        """ratings v1 has 2 replicas, reviews 3 versions; ids are service-version-replica."""
        assert [i.id for i in layout.of("ratings")] == ["ratings-v1-0", "ratings-v1-1"]
        assert [i.version for i in layout.of("reviews")] == ["v1", "v2", "v3"]
        assert len({i.base_id for i in layout.instances}) == len(layout.instances)

    def test_layout_round_trips_through_json(self, layout: Layout) -> None:
        """to_json/from_json preserve the layout (it is saved in the state directory)."""
        assert Layout.from_json(layout.to_json()) == layout
