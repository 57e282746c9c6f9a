"""The Consul config entries the consul driver writes for an environment and its declared policy: splitter
weights Consul accepts, routers with Consul 1.16's retry fields, durations both ways, refused per-edge
routers, and the order ``up`` writes them in. Nothing here runs Consul."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness._errors import MeshError
from harness.mesh.consul import entries
from harness.mesh.consul.driver import CONSUL_DEFAULTS
from harness.mesh.policy import ResolvedPolicy, resolve
from harness.model.environment import EdgePolicy, Environment
from harness.model.loader import load_environment

REPO = Path(__file__).resolve().parents[3]
ENV = load_environment(REPO / "environments" / "consul-local.yaml").model


def policy(**fields: object) -> ResolvedPolicy:
    return resolve(EdgePolicy.model_validate(fields), CONSUL_DEFAULTS)


def declared() -> dict[tuple[str, str], ResolvedPolicy]:
    return {(s.name, c.to): resolve(c, CONSUL_DEFAULTS) for s in ENV.spec.services for c in s.calls}


def consul_accepts(splits: list[dict[str, Any]]) -> bool:
    """Consul 1.16's own check of a splitter: each weight scaled to hundredths (``math.Round(w*100)``) and
    the scaled weights summing to exactly 10000."""
    scaled = [round(float(s["Weight"]) * 100) for s in splits]
    return sum(scaled) == 10000 and all(abs(float(s["Weight"]) * 100 - n) < 1e-6
                                        for s, n in zip(splits, scaled, strict=True))


class TestSubsetWeights:
    def test_thirds_sum_to_exactly_100(self) -> None:
        splits = entries.subset_weights({"v1": 33.333, "v2": 33.333, "v3": 33.334})
        assert sorted(s["Weight"] for s in splits) == [33.33, 33.33, 33.34]
        assert [s["ServiceSubset"] for s in splits] == ["v1", "v2", "v3"]
        assert consul_accepts(splits)

    def test_replica_proportional_thirds(self) -> None:
        splits = entries.subset_weights({"v1": 100 / 3, "v2": 100 / 3, "v3": 100 / 3})
        assert sorted(s["Weight"] for s in splits) == [33.33, 33.33, 33.34]
        assert consul_accepts(splits)

    def test_rounding_error_of_many_shares_goes_to_one(self) -> None:
        """Seven sevenths round to 14.29 each (100.03): one share takes the -0.03."""
        splits = entries.subset_weights({f"v{i}": 100 / 7 for i in range(7)})
        assert sorted(s["Weight"] for s in splits) == [14.26] + [14.29] * 6
        assert consul_accepts(splits)

    def test_zero_weights_are_dropped(self) -> None:
        assert entries.subset_weights({"v1": 100.0, "v2": 0.0, "v3": 0.0}) == [{"Weight": 100.0, "ServiceSubset": "v1"}]
        assert entries.subset_weights({"v1": 0.0, "v2": 90.0, "v3": 10.0}) == [
            {"Weight": 90.0, "ServiceSubset": "v2"}, {"Weight": 10.0, "ServiceSubset": "v3"}]

    def test_splitter_entry(self) -> None:
        assert entries.splitter("reviews", {"v1": 34, "v2": 33, "v3": 33}) == {
            "Kind": "service-splitter", "Name": "reviews",
            "Splits": [{"Weight": 34, "ServiceSubset": "v1"}, {"Weight": 33, "ServiceSubset": "v2"},
                       {"Weight": 33, "ServiceSubset": "v3"}]}


class TestRouter:
    def test_conditions_and_status_codes_go_to_their_own_fields(self) -> None:
        r = entries.router("reviews", policy(retries={"attempts": 3, "on": ["5xx", "503", "connect-failure", "429"]},
                                             timeout="2s"))
        assert r == {"Kind": "service-router", "Name": "reviews",
                     "Routes": [{"Match": {"HTTP": {"PathPrefix": "/"}},
                                 "Destination": {"RequestTimeout": "2s", "NumRetries": 3,
                                                 "RetryOn": ["5xx", "connect-failure"],
                                                 "RetryOnStatusCodes": [503, 429]}}]}

    def test_only_status_codes(self) -> None:
        destination = entries.router("r", policy(retries={"attempts": 1, "on": ["503"]}))["Routes"][0]["Destination"]
        assert destination == {"RequestTimeout": "15s", "NumRetries": 1, "RetryOnStatusCodes": [503]}

    def test_no_retry_fields_when_attempts_is_0(self) -> None:
        destination = entries.router("r", policy(retries={"attempts": 0, "on": ["5xx", "503"]}, timeout="250ms"))
        assert destination["Routes"][0]["Destination"] == {"RequestTimeout": "250ms"}
        # Nothing declared: Consul's defaults (no retries, Envoy's 15 s) written out.
        assert entries.router("r", policy())["Routes"][0]["Destination"] == {"RequestTimeout": "15s"}


class TestDurations:
    @pytest.mark.parametrize(("seconds", "text"), [(3.0, "3s"), (0.25, "250ms"), (1.5, "1500ms"), (90.0, "90s"),
                                                   (0.001, "1ms"), (10.0, "10s"), (0.0, "0s")])
    def test_duration_text(self, seconds: float, text: str) -> None:
        assert entries.duration(seconds) == text

    @pytest.mark.parametrize(("value", "seconds"), [
        ("3s", 3.0), ("1m30s", 90.0), ("250ms", 0.25), ("1h", 3600.0), ("1.5s", 1.5), ("0s", 0.0),
        ("500us", 0.0005), ("500µs", 0.0005), ("100ns", 1e-7),
        (1_000_000_000, 1.0), (10_000_000_000, 10.0), (250_000_000, 0.25), ("1000000000", 1.0), (0, 0.0)])
    def test_go_duration(self, value: object, seconds: float) -> None:
        assert entries.go_duration(value) == pytest.approx(seconds, abs=1e-12)

    @pytest.mark.parametrize("value", ["3x", "", "s", "3s garbage", "three seconds", "1.5.5s", "-3s", True])
    def test_a_duration_the_harness_cannot_read(self, value: object) -> None:
        with pytest.raises(MeshError, match="duration the harness cannot read"):
            entries.go_duration(value)

    def test_round_trip(self) -> None:
        for seconds in (0.25, 1.0, 1.5, 2.0, 3.0, 10.0, 15.0, 90.0):
            assert entries.go_duration(entries.duration(seconds)) == seconds


def env_with(calls: dict[str, list[dict[str, object]]]) -> Environment:
    """A consul environment whose services call as ``calls`` says (service -> its calls)."""
    names = sorted(set(calls) | {str(c["to"]) for cs in calls.values() for c in cs})
    return Environment.model_validate({
        "apiVersion": "harness/v1", "kind": "Environment", "metadata": {"name": "t"},
        "spec": {"mesh": "consul", "consul": {"control_plane": "local"}, "gateway": {"service": names[0]},
                 "services": [{"name": n, "calls": calls.get(n, [])} for n in names]}})


class TestRouterConflicts:
    def test_different_retries_towards_one_callee(self) -> None:
        env = env_with({"productpage": [{"to": "reviews", "retries": {"attempts": 2, "on": ["5xx"]}, "timeout": "3s"}],
                        "details": [{"to": "reviews", "retries": {"attempts": 1, "on": ["5xx"]}, "timeout": "3s"}]})
        # details comes first in the file: the refusal is at productpage's call, the later one
        assert entries.router_conflicts(env, CONSUL_DEFAULTS) == [
            (("services", 1, "calls", 0, "retries"),
             "details and productpage declare different retries or timeouts towards reviews, and Consul's "
             "service-router for reviews applies to every caller: declare them alike")]

    def test_different_timeouts_towards_one_callee(self) -> None:
        env = env_with({"a": [{"to": "c", "timeout": "1s"}, {"to": "d"}], "b": [{"to": "c"}]})
        problems = entries.router_conflicts(env, CONSUL_DEFAULTS)
        assert [where for where, _ in problems] == [("services", 1, "calls", 0, "timeout")]
        assert problems[0][1].startswith("a and b ")

    def test_same_policy_from_every_caller_is_fine(self) -> None:
        same = {"retries": {"attempts": 2, "on": ["5xx"]}, "timeout": "3s"}
        assert entries.router_conflicts(env_with({"a": [{"to": "c", **same}], "b": [{"to": "c", **same}]}),
                                        CONSUL_DEFAULTS) == []
        assert entries.router_conflicts(ENV, CONSUL_DEFAULTS) == []


class TestBaseEntries:
    def test_order_consul_accepts(self) -> None:
        """proxy-defaults, every service-defaults, the resolvers, the routers, the splitters, the gateway last."""
        out = entries.base_entries(ENV, declared(), "mesh-harness-gateway", 21000)
        assert [(e["Kind"], e["Name"]) for e in out] == [
            ("proxy-defaults", "global"),
            ("service-defaults", "productpage"), ("service-defaults", "details"), ("service-defaults", "reviews"),
            ("service-defaults", "ratings"),
            ("service-resolver", "reviews"),
            ("service-router", "details"), ("service-router", "reviews"), ("service-router", "ratings"),
            ("service-splitter", "reviews"),
            ("ingress-gateway", "mesh-harness-gateway"),
        ]

    def test_contents(self) -> None:
        out = {(e["Kind"], e["Name"]): e for e in entries.base_entries(ENV, declared(), "gw", 21000)}
        assert out[("proxy-defaults", "global")] == {"Kind": "proxy-defaults", "Name": "global",
                                                     "Config": {"protocol": "http"}}
        assert out[("service-defaults", "reviews")]["UpstreamConfig"] == {"Overrides": [{
            "Name": "ratings",
            "Limits": {"MaxConnections": 100, "MaxPendingRequests": 100, "MaxConcurrentRequests": 100},
            "PassiveHealthCheck": {"Interval": "1s", "MaxFailures": 5, "EnforcingConsecutive5xx": 100,
                                   "MaxEjectionPercent": 50, "BaseEjectionTime": "10s"}}]}
        assert "UpstreamConfig" not in out[("service-defaults", "ratings")]
        assert out[("service-resolver", "reviews")]["Subsets"] == {
            v: {"Filter": f'Service.Meta.version == "{v}"'} for v in ("v1", "v2", "v3")}
        assert out[("service-router", "reviews")]["Routes"][0]["Destination"] == {
            "RequestTimeout": "3s", "NumRetries": 2, "RetryOn": ["5xx"]}
        assert out[("service-router", "details")]["Routes"][0]["Destination"] == {"RequestTimeout": "2s"}
        assert out[("service-splitter", "reviews")]["Splits"] == [
            {"Weight": 34, "ServiceSubset": "v1"}, {"Weight": 33, "ServiceSubset": "v2"},
            {"Weight": 33, "ServiceSubset": "v3"}]
        assert out[("ingress-gateway", "gw")] == {
            "Kind": "ingress-gateway", "Name": "gw",
            "Listeners": [{"Port": 21000, "Protocol": "http", "Services": [{"Name": "productpage", "Hosts": ["*"]}]}]}


def test_what_consul_cannot_hold_is_named_with_what_to_write() -> None:
    from harness.mesh.consul.entries import inexpressible
    from harness.model.environment import EdgePolicy

    assert inexpressible(EdgePolicy.model_validate(
        {"retries": {"attempts": 2, "on": ["5xx", "503", "reset"]}, "timeout": "3s",
         "circuit_breaker": {"max_requests": 5}, "outlier_detection": {"consecutive_5xx": 3}})) == []
    found = inexpressible(EdgePolicy.model_validate(
        {"retries": {"attempts": 2, "on": ["retriable-status-codes"], "per_try_timeout": "1s"}, "timeout": "0s",
         "circuit_breaker": {"max_retries": 3}, "outlier_detection": {"consecutive_5xx": 0, "min_health_percent": 50}}))
    assert len(found) == 6, found
    assert any("per-try timeout" in f for f in found)
    assert any("cannot retry on retriable-status-codes" in f for f in found)
    assert any("timeout above 0" in f for f in found)
    assert any("max_retries" in f for f in found)
    assert any("min_health_percent" in f for f in found)
    assert any("consecutive_5xx of 1 or more" in f for f in found)
