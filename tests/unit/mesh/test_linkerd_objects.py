"""What the Linkerd driver writes, read without a cluster: the annotations each policy becomes (and the
fields Linkerd cannot express, refused with the reason), Linkerd's duration grammar, the weights of a fault
and a shift, the policy annotations resolve to with Linkerd's defaults, and every object valid against
Linkerd's and the Gateway API's CRD schemas (../shared/reference/linkerd; skipped where it is absent)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness._errors import FaultError
from harness.mesh.linkerd import objects, probes
from harness.mesh.linkerd.driver import declared_annotations, resolved_policy
from harness.model.environment import EdgePolicy

SCHEMAS = Path(__file__).resolve().parents[3].parent / "shared" / "reference" / "linkerd" / "crds" / "schemas"


def _policy(**fields: Any) -> EdgePolicy:
    return EdgePolicy.model_validate(fields)


class TestAnnotations:
    def test_retries_timeout_and_accrual(self) -> None:
        notes = objects.annotations_for(_policy(retries={"attempts": 3, "on": ["5xx", "gateway-error", "429"],
                                                         "per_try_timeout": "250ms"}, timeout="1.5s",
                                                outlier_detection={"consecutive_5xx": 4, "base_ejection_time": "30s"}))
        assert notes == {"retry.linkerd.io/http": "5xx,gateway-error,429", "retry.linkerd.io/limit": "3",
                         "retry.linkerd.io/timeout": "250ms", "timeout.linkerd.io/request": "1500ms",
                         "balancer.linkerd.io/failure-accrual": "consecutive",
                         "balancer.linkerd.io/failure-accrual-consecutive-max-failures": "4",
                         "balancer.linkerd.io/failure-accrual-consecutive-min-penalty": "30s"}

    def test_no_retries_removes_every_retry_key(self) -> None:
        """``retry.linkerd.io/limit: "0"`` means unset (Linkerd's default 1): no retries is no keys."""
        assert objects.annotations_for(_policy(retries={"attempts": 0})) == dict.fromkeys(
            ("retry.linkerd.io/http", "retry.linkerd.io/limit", "retry.linkerd.io/timeout"))

    @pytest.mark.parametrize(("fields", "reason"), [
        ({"retries": {"attempts": 2, "on": ["reset"]}}, "by HTTP status only"),
        ({"circuit_breaker": {"max_requests": 10}}, "no connection or request limits"),
        ({"outlier_detection": {"consecutive_5xx": 3, "interval": "10s"}}, "no interval"),
        ({"outlier_detection": {"max_ejection_percent": 50}}, "no max ejection percent"),
        ({"timeout": "1.0005s"}, "whole milliseconds"),
    ])
    def test_what_linkerd_cannot_express_is_refused_with_the_reason(self, fields: dict[str, Any],
                                                                    reason: str) -> None:
        with pytest.raises(FaultError, match=reason):
            objects.annotations_for(_policy(**fields))

    def test_declared_policy_keeps_what_linkerd_can_express(self) -> None:
        declared = _policy(retries={"attempts": 2}, circuit_breaker={"max_requests": 5}, timeout="3s")
        assert declared_annotations(declared) == {"retry.linkerd.io/http": "5xx", "retry.linkerd.io/limit": "2",
                                                  "timeout.linkerd.io/request": "3s"}


class TestResolvedPolicy:
    def test_linkerd_defaults(self) -> None:
        p = resolved_policy({})
        assert (p.retries, p.timeout_s, p.outlier) == (0, 0.0, None)
        assert "retries" in p.defaulted

    def test_a_limit_without_status_codes_retries_nothing(self) -> None:
        """Linkerd retries no status unless retry.linkerd.io/http names it (§4.1)."""
        assert resolved_policy({"retry.linkerd.io/limit": "3"}).retries == 0

    def test_codes_without_a_limit_retry_once(self) -> None:
        p = resolved_policy({"retry.linkerd.io/http": "5xx", "retry.linkerd.io/timeout": "200ms"})
        assert (p.retries, p.retry_on, p.per_try_timeout_s) == (1, ("5xx",), 0.2)

    def test_accrual_defaults(self) -> None:
        p = resolved_policy({"balancer.linkerd.io/failure-accrual": "consecutive"})
        assert p.outlier is not None
        assert (p.outlier.consecutive_5xx, p.outlier.base_ejection_time_s) == (7, 1.0)


class TestWeights:
    def test_a_fault_in_hundredths_of_a_percent(self) -> None:
        assert objects.route_weights(12.5) == (875_000, 125_000)
        assert objects.route_weights(0.01) == (999_900, 100)

    def test_a_shift_sums_to_the_whole_by_largest_remainder(self) -> None:
        assert objects.scaled_weights({"v1": 1, "v2": 1, "v3": 1}) == {"v1": 333_334, "v2": 333_333, "v3": 333_333}

    def test_all_zero_is_refused(self) -> None:
        with pytest.raises(FaultError, match="every weight is 0"):
            objects.scaled_weights({"v1": 0, "v2": 0})

    def test_at_100_percent_the_fault_backend_is_the_only_backend(self) -> None:
        route = objects.fault_route("ratings", "shop", 9080, 100.0)
        assert route["spec"]["rules"] == [{"backendRefs": [{"name": "mesh-harness-fault-ratings", "port": 8080}]}]


def _schema(api_version: str, kind: str) -> dict[str, Any]:
    if not SCHEMAS.is_dir():
        pytest.skip(f"Linkerd's CRD schemas are not here ({SCHEMAS})")
    group, version = api_version.split("/")
    plural = {"HTTPRoute": "httproutes", "Server": "servers", "MeshTLSAuthentication": "meshtlsauthentications",
              "AuthorizationPolicy": "authorizationpolicies"}[kind]
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{plural}.{group}__{version}.json").read_text())
    return loaded


@pytest.mark.parametrize("api_version", objects.ROUTE_VERSIONS)
def test_every_route_is_valid_against_the_crd_schema_of_its_version(api_version: str) -> None:
    """The fault and shift routes in each version the driver may write (the API server test checks the
    Gateway API's v1 with its CEL rules too)."""
    import jsonschema

    for route in (objects.fault_route("ratings", "shop", 9080, 12.5, api_version),
                  objects.fault_route("ratings", "shop", 9080, 100.0, api_version),
                  objects.shift_route("ratings", "shop", 9080, {"v1": 90.0, "v2": 10.0}, api_version)):
        jsonschema.validate(route, _schema(api_version, "HTTPRoute"))
    bad = objects.fault_route("ratings", "shop", 9080, 12.5, api_version)
    bad["spec"]["rules"][0]["backendRefs"][0]["weight"] = -1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _schema(api_version, "HTTPRoute"))


class TestAdmission:
    """The declared admission of one service (``linkerd.authorization: declared``)."""

    def test_callers_are_admitted_by_service_account_and_the_server_comes_last(self) -> None:
        made = objects.admission_objects("ratings", "shop", {"app": "ratings"}, [9080, "grpc"], ["reviews", "web"])
        assert [(o["kind"], o["metadata"]["name"]) for o in made] == [
            ("MeshTLSAuthentication", "mesh-harness-admit-ratings"),
            ("AuthorizationPolicy", "mesh-harness-admit-ratings-9080"), ("Server", "mesh-harness-admit-ratings-9080"),
            ("AuthorizationPolicy", "mesh-harness-admit-ratings-grpc"), ("Server", "mesh-harness-admit-ratings-grpc")]
        assert made[0]["spec"] == {"identityRefs": [{"kind": "ServiceAccount", "name": "reviews"},
                                                    {"kind": "ServiceAccount", "name": "web"}]}
        assert made[1]["spec"] == {
            "targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "mesh-harness-admit-ratings-9080"},
            "requiredAuthenticationRefs": [{"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication",
                                            "name": "mesh-harness-admit-ratings"}]}
        assert made[2]["spec"] == {"podSelector": {"matchLabels": {"app": "ratings"}}, "port": 9080,
                                   "accessPolicy": "deny"}
        assert all(o["metadata"]["labels"] == {**objects.MANAGED, objects.ADMITS: "ratings"}
                   and objects.DIGEST in o["metadata"]["annotations"] for o in made)
        assert "proxyProtocol" not in made[2]["spec"]  # unknown: Linkerd detects the protocol, as without a Server

    def test_an_opaque_port_stays_opaque(self) -> None:
        """A Server's proxyProtocol overrides config.linkerd.io/opaque-ports; its default would detect HTTP."""
        made = objects.admission_objects("db", "shop", {"app": "db"}, [5432, 9090], ["api"], frozenset({5432}))
        servers = {o["spec"]["port"]: o["spec"].get("proxyProtocol") for o in made if o["kind"] == "Server"}
        assert servers == {5432: "opaque", 9090: None}

    def test_the_entry_admits_any_meshed_caller_and_an_uncalled_service_no_one(self) -> None:
        entry = objects.admission_objects("web", "shop", {"app": "web"}, [9080], None)
        assert [(o["kind"], o["spec"].get("accessPolicy")) for o in entry] == [("Server", "all-authenticated")]
        alone = objects.admission_objects("cron", "shop", {"app": "cron"}, [9080], [])
        assert [(o["kind"], o["spec"].get("accessPolicy")) for o in alone] == [("Server", "deny")]

    def test_every_object_is_valid_against_its_crd_schema(self) -> None:
        import jsonschema

        made = objects.admission_objects("ratings", "shop", {"app": "ratings"}, [9080, "http"], ["reviews"])
        made += objects.admission_objects("web", "shop", {"app": "web"}, [9080], None)
        for obj in made:
            jsonschema.validate(obj, _schema(obj["apiVersion"], obj["kind"]))
        no_port = {**made[2], "spec": {k: v for k, v in made[2]["spec"].items() if k != "port"}}
        no_one = {**made[0], "spec": {"identityRefs": []}}
        for bad in (no_port, no_one):
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(bad, _schema(bad["apiVersion"], bad["kind"]))


def test_the_fault_backend_script_is_python_and_answers_as_told() -> None:
    compile(objects.FAULT_SCRIPT, "fault.py", "exec")
    config, service, deployment = objects.fault_backend("ratings", "shop", 9080, abort_status=503, delay_s=None)
    env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"ABORT_STATUS": "503", "DELAY_S": "", "UPSTREAM": "http://ratings.shop.svc.cluster.local:9080"}
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {"linkerd.io/inject": "disabled"}
    assert config["data"]["fault.py"] == objects.FAULT_SCRIPT
    assert service["spec"]["ports"][0]["port"] == objects.FAULT_PORT


def _serve(script: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ, **env, "LISTEN": f"127.0.0.1:{port}"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.head(url, timeout=1)
            return proc, url
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the fault backend did not start")


def test_the_fault_backend_aborts_or_delays_and_forwards(tmp_path: Path) -> None:
    """The script the pod runs, run here on 127.0.0.1: an abort answers its status to every request; a
    delay answers what the upstream answered (status, headers, body), that much later."""
    script = tmp_path / "fault.py"
    script.write_text(objects.FAULT_SCRIPT)
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    procs = []
    try:
        aborting, abort_url = _serve(script, {"ABORT_STATUS": "503"})
        procs.append(aborting)
        with httpx.Client() as client:  # one kept-alive connection: a chunked body read whole, a HEAD bodiless
            answer = client.post(f"{abort_url}/x", content=iter([b"chunked ", b"body"]))
            assert (answer.status_code, answer.text) == (503, "fault injected by mesh-harness\n")
            assert client.head(f"{abort_url}/x").status_code == 503
            assert client.get(f"{abort_url}/y").status_code == 503
        no_body, no_body_url = _serve(script, {"ABORT_STATUS": "204"})
        procs.append(no_body)
        assert (httpx.get(no_body_url).status_code, httpx.get(no_body_url).content) == (204, b"")
        gone, gone_url = _serve(script, {"DELAY_S": "0", "UPSTREAM": "http://127.0.0.1:9"})
        procs.append(gone)
        assert httpx.get(gone_url).status_code == 502
        delaying, delay_url = _serve(script, {"DELAY_S": "0.3", "UPSTREAM": f"http://127.0.0.1:{upstream.server_port}"})
        procs.append(delaying)
        start = time.monotonic()
        answer = httpx.get(f"{delay_url}/reviews?x=1", headers={"x-probe": "1"})
        assert time.monotonic() - start >= 0.3
        assert (answer.status_code, answer.text, answer.headers["x-upstream"]) == (200, "GET /reviews?x=1 1", "yes")
        assert len(answer.headers.get_list("date")) == 1
        posted = httpx.post(f"{delay_url}/post", content=iter([b"a", b"bc"]))
        assert posted.text == "POST /post 3"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        upstream.shutdown()


class _Upstream(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        got = self.rfile.read(int(self.headers.get("content-length") or 0))
        self._send(f"POST {self.path} {len(got)}".encode())

    def do_GET(self) -> None:
        self._send(f"GET {self.path} {self.headers.get('x-probe')}".encode())

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("x-upstream", "yes")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class TestPlaintextProbe:
    """How an answer through the API server's pod proxy is read (the shapes Linkerd's proxy and the API
    server give; a live Linkerd proxy cannot answer here)."""

    def test_linkerds_403_is_a_refusal(self) -> None:
        outcome, detail = probes.classify(403, {"l5d-proxy-error": "unauthorized request on route"}, b"")
        assert outcome == "refused"
        assert "unauthorized request on route" in detail

    def test_an_apps_own_403_or_200_is_let_in(self) -> None:
        assert probes.classify(403, {}, b"forbidden")[0] == "accepted"
        assert probes.classify(200, {}, b'{"service": "ratings"}')[0] == "accepted"

    def test_the_api_servers_own_error_is_unreachable(self) -> None:
        status = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503,
                             "message": "error trying to reach service: dial tcp 10.0.0.7:9080: connect: refused"})
        outcome, detail = probes.classify(503, {"content-type": "application/json"}, status.encode())
        assert outcome == "unreachable"
        assert "dial tcp" in detail

    def test_the_deny_counter_sums_every_series(self) -> None:
        text = ('inbound_http_authz_deny_total{srv_kind="Server",srv_name="a",target_port="9080"} 3\n'
                'inbound_http_authz_deny_total{srv_kind="Server",srv_name="b",target_port="9080"} 2\n'
                'inbound_http_authz_allow_total{srv_kind="Server"} 40\n')
        assert probes.deny_count(text) == 5.0
