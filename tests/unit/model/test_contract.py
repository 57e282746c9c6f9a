"""Every document written as SUITE-FORMAT shows loads, and the spellings Istio users bring along are accepted.

The contract's examples are copied here verbatim (so the test runs without the contract file), and also
read from SUITE-FORMAT.md itself when it is present, so a field added to the contract and not to the
models fails here first.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from harness._errors import InputError
from harness.model.environment import Environment
from harness.model.loader import load_environment, load_suite
from harness.model.schema import environment_schema
from harness.model.suite import CanaryExpectation, TrafficShift

REPO = Path(__file__).resolve().parents[3]
SUITE_FORMAT = REPO.parent / "shared" / "SUITE-FORMAT.md"

ENVIRONMENT_EXAMPLE = """\
apiVersion: harness/v1
kind: Environment
metadata: {name: local}
spec:
  mesh: local                  # local | compose | istio | linkerd | consul
  gateway: {service: productpage, port: 0}   # where load enters; port 0 = pick a free one
  services:
    - name: productpage
      versions: {v1: {replicas: 1}}          # default: {v1: {replicas: 1}}
      calls:                                  # outbound calls made for every inbound request
        - to: details
          optional: true                      # failure of an optional call does not fail the caller
        - to: reviews
          retries: {attempts: 2, on: [5xx], per_try_timeout: 1s}   # the mesh's declared policy for this edge
          timeout: 3s
    - name: reviews
      versions: {v1: {}, v2: {}, v3: {}}
      split: {v1: 34, v2: 33, v3: 33}         # how traffic to this service divides across versions
      calls:
        - to: ratings
          circuit_breaker: {max_connections: 100, max_pending: 100, max_requests: 100, max_retries: 100}
          outlier_detection: {consecutive_5xx: 5, interval: 1s, base_ejection_time: 10s, max_ejection_percent: 50}
    - name: ratings
      behaviour: {latency: 2ms, error_rate: 0}  # the demo service's own baseline behaviour
    - name: details
  mtls: strict                 # strict | permissive | off
  metrics: {source: envoy}     # envoy: scrape the sidecars' admin endpoints
  safety:
    max_fault_percent: 100     # a fault above this is refused before anything is applied
    allowed_contexts: []       # kubernetes meshes: the harness refuses any other kube context
    allowed_namespaces: []
"""

EXISTING_MESH_EXAMPLE = """\
spec:
  mesh: istio
  gateway: {service: productpage, url: http://127.0.0.1:8080}   # url: where load enters an existing mesh
  istio:
    control_plane: local       # local: the harness runs a real istiod for local workloads (no cluster);
                               # cluster: the mesh of the current kube context (safety.allowed_contexts)
    namespace: shop
    config: [istio/*.yaml]     # the user's own VirtualService / DestinationRule / PeerAuthentication /
                               # Sidecar files. local: they are the environment's policy; cluster: plan
                               # shows how they differ from what the cluster has
  linkerd: {namespace: shop}   # for mesh: linkerd
  consul:                      # for mesh: consul
    control_plane: local       # local: the harness runs a real Consul agent for local workloads;
                               # cluster: an existing datacenter at `address`
    address: http://127.0.0.1:8500
    token_env: CONSUL_HTTP_TOKEN   # the ACL token is read from this environment variable, never from the file
  compose: {project: shop}     # for mesh: compose (the harness generates the compose file from services:)
"""

SUITE_EXAMPLE = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: retries, labels: {team: platform}}
spec:
  environment: local           # name or path of an Environment; --env overrides
  defaults:
    load: {users: 20, rate: 200, path: /}
    phases: {baseline: 10s, fault: 20s, recovery: 10s}
    confidence: 0.99
  experiments:
    - name: ratings-aborts-hidden-by-retries
      description: 30% 503s from ratings are absorbed by two retries
      tags: [ci]
      policy:                  # optional: temporary policy for this experiment, same fields as an edge
        - {from: reviews, to: ratings, retries: {attempts: 2, on: [5xx]}}
      load: {users: 20, rate: 200}
      phases: {baseline: 5s, fault: {min: 10s, max: 60s}, recovery: 5s}
      faults:
        - {kind: http-abort, target: {service: ratings}, status: 503, percent: 30}
      expect:
        - {kind: slo, signal: success_rate, scope: client, window: fault, min: 0.95}
        - {kind: retries, route: {from: reviews, to: ratings}, window: fault, model: oracle}
      abort_if:
        - {signal: success_rate, scope: client, below: 0.5, for: 3s}
"""


def _with_existing_mesh(base: str, mesh_block: str) -> str:
    """The §1 environment with the "meshes the harness does not start" block's fields merged into its spec."""
    lines = [line for line in base.splitlines() if not line.startswith(("  mesh:", "  gateway:"))]
    extra = mesh_block.split("spec:\n", 1)[1]
    return "\n".join(lines) + "\n" + extra


def _write(tmp_path: Path, text: str, name: str = "doc.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


class TestContractExamples:
    def test_environment_example_loads(self, tmp_path: Path) -> None:
        """The §1 Environment example loads as written."""
        env = load_environment(_write(tmp_path, ENVIRONMENT_EXAMPLE)).model
        assert env.spec.service("reviews").effective_split() == {"v1": 34, "v2": 33, "v3": 33}

    def test_existing_mesh_fields_load(self, tmp_path: Path) -> None:
        """§1's istio, linkerd, consul and compose blocks and gateway.url load as written."""
        env = load_environment(_write(tmp_path, _with_existing_mesh(ENVIRONMENT_EXAMPLE, EXISTING_MESH_EXAMPLE)))
        spec = env.model.spec
        assert spec.mesh == "istio"
        assert spec.gateway.url == "http://127.0.0.1:8080"
        assert spec.istio is not None
        assert (spec.istio.control_plane, spec.istio.namespace, spec.istio.config) == ("local", "shop",
                                                                                       ["istio/*.yaml"])
        assert spec.linkerd is not None
        assert spec.linkerd.namespace == "shop"
        assert spec.consul is not None
        assert (spec.consul.address, spec.consul.token_env) == ("http://127.0.0.1:8500", "CONSUL_HTTP_TOKEN")
        assert spec.compose is not None
        assert spec.compose.project == "shop"

    @pytest.mark.parametrize("mesh", ["local", "compose", "istio", "linkerd", "consul"])
    def test_every_mesh_name_loads(self, tmp_path: Path, mesh: str) -> None:
        """Each mesh the contract lists is a valid `mesh:` (drivers may still refuse it at plan time)."""
        text = ENVIRONMENT_EXAMPLE.replace("mesh: local", f"mesh: {mesh}", 1)
        assert load_environment(_write(tmp_path, text)).model.spec.mesh == mesh

    def test_suite_example_loads(self, tmp_path: Path) -> None:
        """The §2 Suite example loads as written."""
        suite = load_suite(_write(tmp_path, SUITE_EXAMPLE)).model
        assert suite.spec.experiments[0].abort_if[0].for_ == 3.0

    def test_section_2_fields_not_in_the_example(self, tmp_path: Path) -> None:
        """Fields the §2 tables name beyond the example: traffic-shift on_fail, canary step, settle."""
        text = SUITE_EXAMPLE.replace(
            "        - {kind: http-abort, target: {service: ratings}, status: 503, percent: 30}\n",
            "        - {kind: traffic-shift, service: reviews, on_fail: halt,\n"
            "           steps: [{split: {v1: 90, v2: 10}, hold: 10s}, {split: {v1: 50, v2: 50}, hold: 10s}]}\n",
        ).replace(
            "    confidence: 0.99\n", "    confidence: 0.99\n    settle: 2s\n",
        ).replace(
            "      abort_if:\n",
            "        - {kind: canary, service: reviews, baseline: v1, canary: v2, step: 2}\n"
            "      settle: 500ms\n      abort_if:\n",
        )
        suite = load_suite(_write(tmp_path, text)).model
        experiment = suite.spec.experiments[0]
        shift, canary = experiment.faults[0], experiment.expect[2]
        assert isinstance(shift, TrafficShift)
        assert isinstance(canary, CanaryExpectation)
        assert (shift.on_fail, canary.step) == ("halt", 2)
        assert (suite.spec.defaults.settle, experiment.settle) == (2.0, 0.5)

    @pytest.mark.parametrize("block", [0, 2])
    def test_the_contract_file_examples_load(self, tmp_path: Path, block: int) -> None:
        """The Environment and Suite examples read from SUITE-FORMAT.md itself load."""
        if not SUITE_FORMAT.is_file():
            pytest.skip(f"{SUITE_FORMAT} is not present")
        text = re.findall(r"```yaml\n(.*?)```", SUITE_FORMAT.read_text(encoding="utf-8"), re.S)[block]
        loader = load_environment if "kind: Environment" in text else load_suite
        assert loader(_write(tmp_path, text)).model is not None


class TestIstioSpellings:
    @pytest.mark.parametrize(("written", "read"), [
        ("[5xx]", ["5xx"]),
        ("5xx", ["5xx"]),
        ('"5xx,connect-failure"', ["5xx", "connect-failure"]),
        ('"5xx, reset ,503"', ["5xx", "reset", "503"]),
        ("[5xx, 503]", ["5xx", "503"]),
        ("503", ["503"]),
        ('["5xx,reset", gateway-error]', ["5xx", "reset", "gateway-error"]),
    ])
    def test_retry_on_forms(self, tmp_path: Path, written: str, read: list[str]) -> None:
        """`on:` takes a list, one condition, or Istio's comma-separated retryOn string."""
        text = ENVIRONMENT_EXAMPLE.replace("on: [5xx]", f"on: {written}")
        env = load_environment(_write(tmp_path, text)).model
        call = env.spec.call("productpage", "reviews")
        assert call is not None
        assert call.retries is not None
        assert call.retries.on == read

    def test_retry_conditions_separated_by_spaces_are_refused(self, tmp_path: Path) -> None:
        """`on: 5xx connect-failure` could be one typo or two conditions: refused, naming both forms."""
        text = ENVIRONMENT_EXAMPLE.replace("on: [5xx]", "on: 5xx connect-failure")
        with pytest.raises(InputError, match=r'on: \[5xx, connect-failure\] or on: "5xx,connect-failure"') as info:
            load_environment(_write(tmp_path, text))
        assert info.value.problems[0].line == 14

    @pytest.mark.parametrize(("written", "read"), [
        ("STRICT", "strict"), ("PERMISSIVE", "permissive"), ("DISABLE", "off"), ("disable", "off"),
        ("Strict", "strict"), ("off", "off"),
    ])
    def test_peer_authentication_modes(self, tmp_path: Path, written: str, read: str) -> None:
        """Istio's PeerAuthentication modes mean our modes, DISABLE being off."""
        text = ENVIRONMENT_EXAMPLE.replace("mtls: strict", f"mtls: {written}")
        assert load_environment(_write(tmp_path, text)).model.spec.mtls == read

    @pytest.mark.parametrize(("written", "fragment"), [
        ("UNSET", "write strict, permissive or off"),
        ("true", "could mean strict or permissive"),
        ("false", "write mtls: off"),
        ("ISTIO_MUTUAL", "DestinationRule"),
    ])
    def test_ambiguous_modes_are_refused(self, tmp_path: Path, written: str, fragment: str) -> None:
        """A mode that could mean more than one thing is refused on its line, naming the accepted forms."""
        text = ENVIRONMENT_EXAMPLE.replace("mtls: strict", f"mtls: {written}")
        with pytest.raises(InputError, match=fragment) as info:
            load_environment(_write(tmp_path, text))
        assert info.value.problems[0].line == 26

    def test_schema_accepts_the_istio_spellings(self) -> None:
        """Editors accept what the loader accepts: retryOn strings, STRICT, and the existing-mesh blocks."""
        jsonschema = pytest.importorskip("jsonschema")
        validator = jsonschema.Draft202012Validator(environment_schema())
        doc: dict[str, Any] = {"apiVersion": "harness/v1", "kind": "Environment", "metadata": {"name": "e"},
               "spec": {"mesh": "consul", "mtls": "STRICT",
                        "gateway": {"service": "a", "url": "http://127.0.0.1:8080"},
                        "services": [{"name": "a", "calls": [{"to": "b", "retries": {
                            "attempts": 2, "on": "5xx,connect-failure"}}]}, {"name": "b"}],
                        "istio": {"control_plane": "local", "namespace": "shop", "config": ["istio/*.yaml"]},
                        "linkerd": {"namespace": "shop"}, "compose": {"project": "shop"},
                        "consul": {"control_plane": "cluster", "address": "http://127.0.0.1:8500",
                                   "token_env": "CONSUL_HTTP_TOKEN"}}}
        validator.validate(doc)
        Environment.model_validate(doc)
        doc["spec"]["consul"]["token"] = "s3cr3t"
        assert not validator.is_valid(doc)


class TestExistingMeshBlocks:
    def test_a_token_in_the_file_is_refused(self, tmp_path: Path) -> None:
        """`consul.token` is refused on its line: the token comes from the environment variable only."""
        text = ENVIRONMENT_EXAMPLE + "  consul:\n    address: http://127.0.0.1:8500\n    token: s3cr3t\n"
        with pytest.raises(InputError, match="token_env") as info:
            load_environment(_write(tmp_path, text))
        assert info.value.problems[0].line == 34

    def test_gateway_url_needs_a_scheme(self, tmp_path: Path) -> None:
        """`url: 127.0.0.1:8080` is refused with the URL to write."""
        text = ENVIRONMENT_EXAMPLE.replace("{service: productpage, port: 0}",
                                           "{service: productpage, url: 127.0.0.1:8080}")
        with pytest.raises(InputError, match=re.escape("write e.g. url: http://127.0.0.1:8080")):
            load_environment(_write(tmp_path, text))

    def test_defaults_of_the_blocks(self, tmp_path: Path) -> None:
        """An empty block takes documented defaults: cluster control planes, namespace default, Consul's address."""
        text = ENVIRONMENT_EXAMPLE + "  istio: {}\n  consul: {}\n  linkerd: {}\n  compose: {}\n"
        spec = load_environment(_write(tmp_path, text)).model.spec
        assert spec.istio is not None
        assert spec.consul is not None
        assert spec.linkerd is not None
        assert spec.compose is not None
        assert (spec.istio.control_plane, spec.istio.namespace, spec.istio.config) == ("cluster", "default", [])
        assert (spec.consul.control_plane, spec.consul.address, spec.consul.token_env) == (
            "cluster", "http://127.0.0.1:8500", None)
        assert spec.linkerd.namespace == "default"
        assert spec.compose.project is None
