"""The Istio objects the istio driver writes: valid against Istio's own CRD schemas, the policy read back
from them as istiod applies it (with Istio's defaults), the patches for each intent, and exact undo through
the config directory. Nothing here runs istiod (tests/integration/test_istio_mesh.py does)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from istiocrds import crds

from harness._errors import FaultError, InputError
from harness.mesh.istio import objects as O
from harness.mesh.istio import routing
from harness.mesh.istio.config import ConfigDir, Conflict, dump, load_user_config
from harness.mesh.istio.naming import IstioNaming
from harness.mesh.istio.sds import node_name
from harness.metrics.vocabulary import Listener, Upstream
from harness.model.environment import EdgePolicy
from harness.model.loader import load_environment

REPO = Path(__file__).resolve().parents[3]
ENV = load_environment(REPO / "environments" / "istio-local.yaml").model
NS = "bookinfo"


def _schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for crd in crds():
        [version] = crd["spec"]["versions"]
        out[f"{crd['spec']['group']}/{version['name']}/{crd['spec']['names']['kind']}"] = \
            version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return out


def valid(obj: dict[str, Any]) -> None:
    """Validate ``obj.spec`` against its kind's CRD schema (the structural part: CEL rules need a real API
    server); ``additionalProperties`` is closed as the API server's pruning would drop unknown fields."""
    schema = _schemas()[f"{obj['apiVersion']}/{obj['kind']}"]
    jsonschema.validate(obj["spec"], _closed(schema))
    assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(obj["metadata"]) <= {"name", "namespace", "labels", "annotations"}


def _closed(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def _placement() -> O.Placement:
    workloads = tuple(O.Workload(f"{s.name}-{v}-0", s.name, v, f"127.150.0.{n + 2}", f"127.150.1.{n + 2}", 20000 + n)
                      for n, (s, v) in enumerate((s, v) for s in ENV.spec.services for v in s.versions))
    return O.Placement(NS, O.service_ports(ENV), workloads, "127.0.0.1", 18080)


def _all() -> list[dict[str, Any]]:
    return O.base_objects(ENV, _placement()) + O.policy_objects(ENV, NS)


# ------------------------------------------------------------------------------------------- schema
def test_every_object_written_is_valid_against_istios_crd_schemas() -> None:
    """ServiceEntry, WorkloadEntry, Sidecar, Gateway, VirtualService, DestinationRule and PeerAuthentication
    as written for the demo environment all pass Istio's CRD schemas (closed to unknown fields)."""
    objs = _all()
    assert {o["kind"] for o in objs} == {"ServiceEntry", "WorkloadEntry", "Sidecar", "Gateway", "VirtualService",
                                         "DestinationRule", "PeerAuthentication"}
    for obj in objs:
        valid(obj)


def test_the_schema_check_can_fail() -> None:
    """A retries block with a string where Istio wants an integer is refused by the same check."""
    vs = next(o for o in _all() if o["kind"] == "VirtualService" and o["metadata"]["name"] == "reviews")
    bad = copy.deepcopy(vs)
    bad["spec"]["http"][0]["retries"] = {"attempts": "x"}
    with pytest.raises(jsonschema.ValidationError):
        valid(bad)
    bad = copy.deepcopy(vs)
    bad["spec"]["http"][0]["retyrs"] = {"attempts": 2}
    with pytest.raises(jsonschema.ValidationError):
        valid(bad)


def test_split_weights_are_integers_summing_to_100() -> None:
    """Istio wants integer weights that sum to 100: 34/33/33 stays; 1/1/1 becomes 34/33/33."""
    assert O._integer_weights({"v1": 34, "v2": 33, "v3": 33}) == {"v1": 34, "v2": 33, "v3": 33}
    assert sum(O._integer_weights({"v1": 1, "v2": 1, "v3": 1}).values()) == 100
    assert O._integer_weights({"v1": 100, "v2": 0}) == {"v1": 100, "v2": 0}


def test_each_workload_binds_its_own_addresses_with_no_capture() -> None:
    """Each Sidecar binds the inbound listener on the WorkloadEntry's address, one outbound listener per
    callee port on the workload's second address, with no iptables capture."""
    objs = {O.key_of(o): o for o in _all()}
    sidecar = objs[f"Sidecar/{NS}/productpage-v1-0"]["spec"]
    entry = objs[f"WorkloadEntry/{NS}/productpage-v1-0"]["spec"]
    assert sidecar["ingress"][0]["bind"] == entry["address"]
    assert sidecar["ingress"][0]["captureMode"] == "NONE"
    ports = O.service_ports(ENV)
    assert [(e["port"]["number"], e["hosts"]) for e in sidecar["egress"]] == [
        (ports["details"], [f"./details.{NS}.svc.cluster.local"]),
        (ports["reviews"], [f"./reviews.{NS}.svc.cluster.local"])]
    assert {e["bind"] for e in sidecar["egress"]} == {"127.150.1.2"}


# ------------------------------------------------------------------------------------------- policy
def test_the_declared_policy_reads_back_as_declared() -> None:
    """productpage->reviews: 2 retries on 5xx, 1s per try, 3s timeout (its own sourceLabels route);
    reviews->ratings: breakers and ejection from the DestinationRule, Istio's panic threshold 0."""
    objs = O.policy_objects(ENV, NS)
    pr = routing.resolved_policy(objs, {"app": "productpage"}, O.fqdn("reviews", NS))
    assert (pr.retries, pr.retry_on, pr.per_try_timeout_s, pr.timeout_s) == (2, ("5xx",), 1.0, 3.0)
    rr = routing.resolved_policy(objs, {"app": "reviews"}, O.fqdn("ratings", NS))
    assert (rr.max_connections, rr.max_pending, rr.max_requests, rr.max_retries) == (100, 100, 100, 100)
    assert rr.outlier is not None
    assert (rr.outlier.consecutive_5xx, rr.outlier.interval_s,
                                       rr.outlier.base_ejection_time_s, rr.outlier.max_ejection_percent,
                                       rr.outlier.min_health_percent) == (5, 1.0, 10.0, 50.0, 0.0)


def test_absent_fields_are_istios_defaults() -> None:
    """An edge with no retries declared gets Istio's: 2 retries on connect-failure, refused-stream,
    unavailable, cancelled and 503; no route timeout; unlimited breakers (2^32-1); no outlier detection."""
    objs = O.policy_objects(ENV, NS)
    rr = routing.resolved_policy(objs, {"app": "reviews"}, O.fqdn("ratings", NS))
    # retry.go's defaultRetryOn, less retriable-status-codes (no code is configured, so it retries nothing)
    assert (rr.retries, rr.retry_on, rr.timeout_s) == (
        2, ("connect-failure", "refused-stream", "unavailable", "cancelled"), 0.0)
    none = routing.resolved_policy([], {"app": "a"}, O.fqdn("b", NS))
    assert (none.max_connections, none.max_retries, none.outlier) == (2**32 - 1, 2**32 - 1, None)
    assert {"retries", "outlier_detection"} <= set(none.defaulted)


def test_attempts_zero_or_absent_switch_retries_off() -> None:
    """Istio's ConvertPolicy: a retries block with attempts 0 (or none) disables retries."""
    vs = {"apiVersion": O.NETWORKING, "kind": "VirtualService", "metadata": {"name": "r", "namespace": NS},
          "spec": {"hosts": ["ratings"], "http": [{"route": [{"destination": {"host": "ratings"}}],
                                                   "retries": {"attempts": 0}}]}}
    assert routing.resolved_policy([vs], {"app": "x"}, O.fqdn("ratings", NS)).retries == 0
    vs["spec"]["http"][0]["retries"] = {"retryOn": "5xx"}
    assert routing.resolved_policy([vs], {"app": "x"}, O.fqdn("ratings", NS)).retries == 0


def test_a_route_for_another_caller_or_for_some_paths_is_not_the_edges_policy() -> None:
    """Routes matched on another caller's labels, or on a path, are skipped; the first that takes every
    request of this caller is its policy."""
    vs = {"apiVersion": O.NETWORKING, "kind": "VirtualService", "metadata": {"name": "r", "namespace": NS},
          "spec": {"hosts": ["ratings"], "http": [
              {"match": [{"sourceLabels": {"app": "other"}}], "route": [{"destination": {"host": "ratings"}}],
               "retries": {"attempts": 9}},
              {"match": [{"uri": {"prefix": "/admin"}}], "route": [{"destination": {"host": "ratings"}}],
               "timeout": "1s"},
              {"route": [{"destination": {"host": "ratings"}}],
               "retries": {"attempts": 4, "retryOn": "gateway-error"}}]}}
    p = routing.resolved_policy([vs], {"app": "reviews"}, O.fqdn("ratings", NS))
    assert (p.retries, p.retry_on, p.timeout_s) == (4, ("gateway-error",), 0.0)
    assert routing.resolved_policy([vs], {"app": "other"}, O.fqdn("ratings", NS)).retries == 9


def test_two_virtual_services_for_one_host_are_refused() -> None:
    """Istio merges them unpredictably: the driver will not patch either."""
    vs = next(o for o in O.policy_objects(ENV, NS) if o["kind"] == "VirtualService")
    twin = copy.deepcopy(vs)
    twin["metadata"]["name"] = "twin"
    with pytest.raises(FaultError, match="merges such VirtualServices"):
        routing.virtual_service([vs, twin], vs["spec"]["hosts"][0])


# ------------------------------------------------------------------------------------------- patches
def _vs(name: str) -> dict[str, Any]:
    return next(o for o in O.policy_objects(ENV, NS) if o["kind"] == "VirtualService" and o["metadata"]["name"] == name)


def test_a_fault_goes_on_every_route_and_stays_valid() -> None:
    vs = _vs("reviews")
    fault = {"abort": {"httpStatus": 503, "percentage": {"value": 30.0}}}
    out = routing.with_fault(vs, O.fqdn("reviews", NS), NS, "reviews", fault)
    assert [r.get("fault") for r in out["spec"]["http"]] == [fault, fault]
    assert "fault" not in vs["spec"]["http"][0]  # the original is untouched
    valid(out)


def test_a_fault_where_no_virtual_service_exists_creates_one() -> None:
    out = routing.with_fault(None, O.fqdn("ratings", NS), NS, "ratings",
                             {"delay": {"fixedDelay": "0.5s", "percentage": {"value": 100.0}}})
    assert out["spec"]["hosts"] == [O.fqdn("ratings", NS)]
    valid(out)


def test_a_split_re_weights_every_route_to_the_host() -> None:
    vs = _vs("reviews")
    out = routing.with_split(vs, O.fqdn("reviews", NS), NS, "reviews", {"v1": 10, "v2": 90, "v3": 0},
                             {"v1": "v1", "v2": "v2", "v3": "v3"}, 9082)
    for route in out["spec"]["http"]:
        assert [(d["destination"]["subset"], d["weight"]) for d in route["route"]] == [("v1", 10), ("v2", 90)]
    valid(out)


def test_a_policy_override_adds_the_callers_own_route_and_sets_the_destination_rule() -> None:
    """retries on reviews->ratings: a sourceLabels route for reviews is added (a copy of the route it took);
    a breaker goes in the DestinationRule; both valid; reading back gives the override."""
    objs = O.policy_objects(ENV, NS)
    host = O.fqdn("ratings", NS)
    vs, dr = routing.virtual_service(objs, host), routing.destination_rule(objs, host)
    new_vs, new_dr = routing.with_policy(vs, dr, host, NS, "ratings", "reviews", EdgePolicy.model_validate({
        "retries": {"attempts": 3, "on": ["5xx", "reset"], "per_try_timeout": "250ms"},
        "circuit_breaker": {"max_requests": 5}}))
    assert new_vs is not None
    assert new_dr is not None
    assert new_vs["spec"]["http"][0]["match"] == [{"sourceLabels": {"app": "reviews"}}]
    valid(new_vs)
    valid(new_dr)
    rest = [o for o in objs if O.key_of(o) not in (O.key_of(new_vs), O.key_of(new_dr))]
    p = routing.resolved_policy([*rest, new_vs, new_dr], {"app": "reviews"}, host)
    assert (p.retries, p.retry_on, p.per_try_timeout_s, p.max_requests, p.max_connections) == \
        (3, ("5xx", "reset"), 0.25, 5, 100)


# ------------------------------------------------------------------------------------------- config dir
def test_swaps_are_exact_idempotent_and_refuse_what_someone_else_changed(tmp_path: Path) -> None:
    """A change swaps expected text for new text; doing it twice changes nothing, undoing restores the exact
    bytes (or removes what it created), and text someone else wrote meanwhile is a Conflict, left as found."""
    store = ConfigDir(tmp_path)
    key = "VirtualService/shop/ratings"
    original = "spec: {hosts: [ratings]}  # the user's own spacing and comment\n"
    store.write(key, original)
    assert store.swap(key, original, "new\n") is True
    assert store.swap(key, original, "new\n") is False
    assert store.swap(key, "new\n", original) is True
    assert store.read(key) == original
    assert store.swap(key, "new\n", original) is False  # an undo replayed
    created = "VirtualService/shop/details"
    assert store.swap(created, None, "made\n") is True
    assert store.swap(created, "made\n", None) is True
    assert store.read(created) is None
    store.write(key, "someone else's\n")
    with pytest.raises(Conflict, match="changed since mesh-harness read it"):
        store.swap(key, original, "new\n")
    assert store.read(key) == "someone else's\n"
    assert not list(tmp_path.glob("*.tmp"))


def test_user_config_is_read_with_the_environments_namespace(tmp_path: Path) -> None:
    (tmp_path / "istio").mkdir()
    (tmp_path / "istio" / "vs.yaml").write_text(dump({"apiVersion": O.NETWORKING, "kind": "VirtualService",
                                                       "metadata": {"name": "r"}, "spec": {"hosts": ["r"]}})
                                                 + "---\n" + dump({"kind": "ConfigMap", "metadata": {"name": "x"}}))
    with pytest.raises(InputError, match="document 2 is not an Istio object"):
        load_user_config(["istio/*.yaml"], tmp_path, NS)
    (tmp_path / "istio" / "vs.yaml").write_text(dump({"apiVersion": O.NETWORKING, "kind": "VirtualService",
                                                       "metadata": {"name": "r"}, "spec": {"hosts": ["r"]}}))
    [obj] = load_user_config(["istio/*.yaml"], tmp_path, NS)
    assert obj["metadata"]["namespace"] == NS
    with pytest.raises(InputError, match="matches no file"):
        load_user_config(["nope/*.yaml"], tmp_path, NS)


# ------------------------------------------------------------------------------------------- names
def test_istio_stat_names_map_into_the_vocabulary() -> None:
    """Names as istiod-configured Envoy 1.40 exports them (measured)."""
    naming = IstioNaming({9080: "productpage", 9081: "details", 9082: "reviews"}, 18080)
    stats = {
        f"cluster.outbound|9082|v2|reviews.{NS}.svc.cluster.local;.upstream_rq_total": 7.0,
        f"cluster.outbound|9082||reviews.{NS}.svc.cluster.local;.upstream_rq_total": 3.0,
        "cluster.inbound|9080||;.upstream_rq_total": 5.0,
        "http.outbound_127.150.1.2_9082;.downstream_rq_completed": 7.0,
        "http.inbound_127.150.0.2_9080;.downstream_rq_2xx": 5.0,
        "http.outbound_127.0.0.1_18080;.downstream_rq_completed": 9.0,
    }
    q = naming.read(stats)
    assert q.upstream == {Upstream("reviews", "v2"): {"attempts": 7.0}}
    assert q.listeners[Listener("outbound", "reviews")] == {"completed": 7.0}
    assert q.listeners[Listener("inbound")] == {"2xx": 5.0}
    assert q.listeners[Listener("ingress")] == {"completed": 9.0}


def test_the_sds_server_knows_each_envoy_by_its_node_id() -> None:
    assert node_name(f"sidecar~127.150.0.2~reviews-v1-0.{NS}~{NS}.svc.cluster.local") == "reviews-v1-0"
    assert node_name(f"router~127.0.0.1~istio-ingressgateway.{NS}~{NS}.svc.cluster.local") == "istio-ingressgateway"


def test_hosts_resolve_as_istiod_resolves_short_names() -> None:
    """Only a name with no dot gets the namespace and domain (ResolveShortnameToFQDN); ``ratings.shop`` is
    taken as written, and a VirtualService for it is not the one for ratings.shop.svc.cluster.local."""
    assert routing.normalize_host("ratings", NS) == f"ratings.{NS}.svc.cluster.local"
    assert routing.normalize_host("ratings.shop", NS) == "ratings.shop"
    assert routing.normalize_host("*.example.com", NS) == "*.example.com"


def test_zero_limits_are_read_as_istiod_applies_them() -> None:
    """istiod applies a breaker limit or maxEjectionPercent only when > 0: a 0 reads as its default."""
    dr = {"apiVersion": O.NETWORKING, "kind": "DestinationRule", "metadata": {"name": "r", "namespace": NS},
          "spec": {"host": "ratings", "trafficPolicy": {
              "connectionPool": {"http": {"maxRetries": 0, "http2MaxRequests": 7}},
              "outlierDetection": {"consecutive5xxErrors": 2, "maxEjectionPercent": 0, "consecutiveErrors": 9}}}}
    p = routing.resolved_policy([dr], {"app": "x"}, O.fqdn("ratings", NS))
    assert (p.max_retries, p.max_requests) == (2**32 - 1, 7)
    assert p.outlier is not None
    assert (p.outlier.consecutive_5xx, p.outlier.max_ejection_percent) == (2, 10.0)


def test_policy_writes_only_what_istiod_accepts() -> None:
    """No empty connectionPool, no timeout of 0s (none is written), and a max_retries of 0, which istiod
    would silently ignore, is refused with the reason."""
    objs = O.policy_objects(ENV, NS)
    host = O.fqdn("ratings", NS)
    vs, dr = routing.virtual_service(objs, host), routing.destination_rule(objs, host)
    new_vs, new_dr = routing.with_policy(vs, dr, host, NS, "ratings", "reviews",
                                         EdgePolicy.model_validate({"timeout": "0s", "circuit_breaker": {}}))
    assert new_vs is not None
    assert "timeout" not in new_vs["spec"]["http"][0]
    assert new_dr == dr
    with pytest.raises(FaultError, match="istiod ignores a maxRetries of 0"):
        routing.with_policy(vs, dr, host, NS, "ratings", "reviews",
                            EdgePolicy.model_validate({"circuit_breaker": {"max_retries": 0}}))


def test_an_abort_and_a_delay_on_one_target_share_the_fault_block() -> None:
    vs = _vs("reviews")
    host = O.fqdn("reviews", NS)
    both = routing.with_fault(routing.with_fault(vs, host, NS, "reviews", {"abort": {"httpStatus": 503,
                                                                                      "percentage": {"value": 5.0}}}),
                              host, NS, "reviews", {"delay": {"fixedDelay": "1s", "percentage": {"value": 5.0}}})
    assert set(both["spec"]["http"][0]["fault"]) == {"abort", "delay"}
    valid(both)


def test_a_split_leaves_routes_to_other_hosts_alone() -> None:
    vs = _vs("reviews")
    vs["spec"]["http"].insert(0, {"name": "old", "match": [{"uri": {"prefix": "/old"}}],
                                  "redirect": {"uri": "/new"}})
    out = routing.with_split(vs, O.fqdn("reviews", NS), NS, "reviews", {"v1": 100}, {"v1": "v1"}, 9082)
    assert out["spec"]["http"][0] == vs["spec"]["http"][0]
    assert out["spec"]["http"][1]["route"][0]["destination"]["subset"] == "v1"


def test_a_user_object_istiod_would_drop_is_refused(tmp_path: Path) -> None:
    """An object of another API group (istiod silently ignores it) is an input error naming the file."""
    (tmp_path / "vs.yaml").write_text(dump({"apiVersion": "networking.k8s.io/v1", "kind": "VirtualService",
                                            "metadata": {"name": "r"}, "spec": {"hosts": ["r"]}}))
    with pytest.raises(InputError, match=r"istiod reads VirtualService only as networking\.istio\.io"):
        load_user_config(["vs.yaml"], tmp_path, NS)


def test_istiods_own_words_explain_a_failed_start() -> None:
    from harness.mesh.istio.istiod import crash_reason

    log = ("2026-12-02T06:14:54Z\twarn\tFailed to parse /s/istio/config/VirtualService_x.yaml: configuration is "
           "invalid: http retry policy configured when attempts are set to 0 (disabled)\n")
    reason = crash_reason(log)
    assert reason is not None
    assert "attempts are set to 0" in reason
    assert crash_reason("fine\n") is None


def test_a_route_matched_on_the_callers_namespace_or_the_mesh_is_its_route() -> None:
    vs = {"apiVersion": O.NETWORKING, "kind": "VirtualService", "metadata": {"name": "r", "namespace": NS},
          "spec": {"hosts": ["ratings"], "http": [
              {"match": [{"sourceNamespace": "elsewhere"}], "route": [{"destination": {"host": "ratings"}}],
               "retries": {"attempts": 7}},
              {"match": [{"sourceNamespace": NS, "gateways": ["mesh"]}],
               "route": [{"destination": {"host": "ratings"}}], "retries": {"attempts": 4}}]}}
    assert routing.resolved_policy([vs], {"app": "reviews"}, O.fqdn("ratings", NS)).retries == 4


def test_a_value_istio_cannot_read_is_an_input_error_not_a_crash() -> None:
    """A user's VirtualService with ``attempts: "x"`` or a bare-number timeout: exit 2 naming the host."""
    for route in ({"retries": {"attempts": "x"}}, {"timeout": 5}):
        vs = {"apiVersion": O.NETWORKING, "kind": "VirtualService", "metadata": {"name": "r", "namespace": NS},
              "spec": {"hosts": ["ratings"], "http": [{"route": [{"destination": {"host": "ratings"}}], **route}]}}
        with pytest.raises(InputError, match=f"ratings.{NS}.svc.cluster.local holds a value Istio cannot read"):
            routing.resolved_policy([vs], {"app": "x"}, O.fqdn("ratings", NS))
