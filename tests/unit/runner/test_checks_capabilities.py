"""validate/plan/run refuse what the environment's driver cannot do, at the fault's FILE:LINE, naming the
mesh and its reason; and a mesh with no driver is refused at the environment's ``mesh:`` line."""

from __future__ import annotations

from pathlib import Path

import pytest

import harness.mesh
from harness.mesh.base import Capabilities
from harness.model.loader import load_environment, load_suite
from harness.runner.checks import check_suite
from harness.testing import FakeMesh, registered_driver

REPO = Path(__file__).resolve().parents[3]
ENV = (REPO / "environments" / "local.yaml").read_text()

SUITE = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: caps}
spec:
  experiments:
    - name: a
      policy:
        - {from: productpage, to: reviews, timeout: 1s}
      faults:
        - {kind: kill, target: {service: ratings}, count: 1}
        - {kind: http-abort, target: {service: reviews}, percent: 10, at: caller}
"""


class NoL4Mesh(FakeMesh):
    """A mesh like Istio: no process faults, HTTP faults only at the caller, no timeout overrides."""

    name = "nol4"
    capabilities = Capabilities(
        mesh="nol4", faults=frozenset({"http-abort", "http-delay"}), http_placements=frozenset({"target"}),
        policy_fields=frozenset({"retries"}),
        refused={"kill": "pods are deleted, not signalled, in this mesh; use a driver that can"},
    )


def problems(tmp_path: Path, mesh: str) -> list[str]:
    env_file = tmp_path / "env.yaml"
    env_file.write_text(ENV.replace("mesh: local", f"mesh: {mesh}") if mesh != "local" else ENV)
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(SUITE)
    env = load_environment(env_file)
    return [str(p) for p in check_suite(load_suite(suite_file), env.model, str(env_file), env.positions)]


def test_what_the_driver_cannot_do_is_refused_where_it_is_written(tmp_path: Path) -> None:
    """Each refusal names the mesh, at the line of the fault or policy field it concerns."""
    with registered_driver("local", NoL4Mesh):
        found = problems(tmp_path, "local")
    suite = tmp_path / "suite.yaml"
    assert any(p.startswith(f"{suite}:8:") and "cannot set timeout" in p for p in found), found
    assert any(p.startswith(f"{suite}:10:") and "the nol4 mesh cannot do kill: pods are deleted" in p
               for p in found), found
    assert any(p.startswith(f"{suite}:11:") and "cannot place http-abort at the caller" in p for p in found), found


def test_the_local_mesh_accepts_all_of_it(tmp_path: Path) -> None:
    """The same suite is clean against the local mesh, which can do every part of it."""
    assert problems(tmp_path, "local") == []


def test_a_mesh_without_a_driver_is_refused_at_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mesh the schema names but this version has no driver for (every one has a driver now: consul's is
    taken away for the test) is refused at the environment's mesh: line."""
    monkeypatch.delitem(harness.mesh.DRIVERS, "consul")
    found = problems(tmp_path, "consul")
    env_file = tmp_path / "env.yaml"
    line = ENV.splitlines().index("  mesh: local") + 1
    assert any(p.startswith(f"{env_file}:{line}:") and "has no driver in this version" in p for p in found), found


EXPECTING = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: expecting}
spec:
  experiments:
    - name: a
      expect:
        - {kind: timeout, route: {from: details, to: ratings}, at: 1s}
        - {kind: outlier-ejection, route: {from: reviews, to: ratings}, instance: {service: details}}
        - {kind: circuit-breaker, route: {from: reviews, to: ratings}}
"""


def test_expectations_name_routes_and_instances_that_exist(tmp_path: Path) -> None:
    """A timeout on a pair that is not an edge, an ejection of an instance the route does not call: refused."""
    env_file = tmp_path / "env.yaml"
    env_file.write_text(ENV)
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(EXPECTING)
    env = load_environment(env_file)
    found = [str(p) for p in check_suite(load_suite(suite_file), env.model, str(env_file), env.positions)]
    assert any(p.startswith(f"{suite_file}:8:") and "details -> ratings is not an edge" in p for p in found), found
    assert any(p.startswith(f"{suite_file}:9:") and "is not called on reviews->ratings" in p for p in found), found
    assert len(found) == 2, found


def test_expectations_need_evidence_the_mesh_shows(tmp_path: Path) -> None:
    """outlier-ejection needs ejection evidence: a mesh whose metrics lack it refuses the expectation."""
    env_file = tmp_path / "env.yaml"
    env_file.write_text(ENV)
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(EXPECTING.replace("{service: details}", "{service: ratings}")
                          .replace("from: details, to: ratings", "from: reviews, to: ratings"))
    env = load_environment(env_file)
    with registered_driver("local", NoL4Mesh):
        found = [str(p) for p in check_suite(load_suite(suite_file), env.model, str(env_file), env.positions)]
    assert any(p.startswith(f"{suite_file}:9:") and "cannot show what outlier-ejection needs (ejections)" in p
               for p in found), found


MTLS = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: mtls}
spec:
  experiments:
    - name: a
      faults:
        - {kind: cert-rotation, target: [reviews]}
      expect:
        - {kind: mtls, failed_requests: 0}
        - {kind: mtls, rotated: true}
        - {kind: mtls, rejects: [plaintext]}
"""


def test_certificate_faults_and_mtls_evidence_need_a_driver_that_can(tmp_path: Path) -> None:
    """A mesh that cannot rotate certificates refuses the fault; one whose driver cannot show certificates or
    probe its listeners refuses rotated: and rejects:, but still judges failed_requests from counters."""
    env_file = tmp_path / "env.yaml"
    env_file.write_text(ENV)
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(MTLS)
    env = load_environment(env_file)
    with registered_driver("local", FakeMesh):  # counters, but no certificates and no probes
        found = [str(p) for p in check_suite(load_suite(suite_file), env.model, str(env_file), env.positions)]
    assert any(p.startswith(f"{suite_file}:8:") and "the fake mesh cannot do cert-rotation" in p for p in found)
    assert any(p.startswith(f"{suite_file}:11:") and "(certificates)" in p for p in found), found
    assert any(p.startswith(f"{suite_file}:12:") and "(peer-probes)" in p for p in found), found
    assert not any(f"{suite_file}:10:" in p for p in found), found
    assert len(found) == 3, found
    assert problems_of(tmp_path, MTLS) == []


def problems_of(tmp_path: Path, suite: str) -> list[str]:
    env_file = tmp_path / "env.yaml"
    env_file.write_text(ENV)
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(suite)
    env = load_environment(env_file)
    return [str(p) for p in check_suite(load_suite(suite_file), env.model, str(env_file), env.positions)]


ROTATION = """\
apiVersion: harness/v1
kind: Suite
metadata: {{name: rotation}}
spec:
  defaults:
    phases: {{baseline: 1s, fault: 4s, recovery: 1s}}
  experiments:
    - name: a
      faults:
        - {fault}
      expect:
        - {expect}
"""


@pytest.mark.parametrize(("fault", "expect", "line", "says"), [
    # a swap in the settle time, which no window reads
    ("{kind: cert-rotation, target: all, at: 500ms}", "{kind: mtls, rotated: true}", 10, "write at: 1s or later"),
    # holds that leave the window no time on the new certificates
    ("{kind: cert-rotation, what: ca, at: 1s, hold: 1500ms}", "{kind: mtls, rotated: true}", 10,
     "leaving less than 1s of the window"),
    # rotated on a window that never shows a rotation
    ("{kind: cert-rotation, target: all}", "{kind: mtls, window: recovery, rotated: true}", 12, "write window: fault"),
])
def test_a_rotation_the_window_cannot_see_is_refused_at_its_line(tmp_path: Path, fault: str, expect: str,
                                                                  line: int, says: str) -> None:
    found = problems_of(tmp_path, ROTATION.format(fault=fault, expect=expect))
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path / 'suite.yaml'}:{line}:"), found
    assert says in found[0], found


def test_an_untrusted_leaf_and_a_rotation_are_refused_together(tmp_path: Path) -> None:
    """The rotation would wait forever for the untrusted sidecar to serve its new leaf: two experiments."""
    suite = ROTATION.format(fault="{kind: cert-rotation, target: all}\n        - {kind: cert-untrusted, "
                                  "target: {service: ratings}}", expect="{kind: mtls}")
    found = problems_of(tmp_path, suite)
    assert len(found) == 1, found
    assert ":11:" in found[0]
    assert "put them in two experiments" in found[0]


def test_a_rotation_the_window_sees_is_accepted(tmp_path: Path) -> None:
    assert problems_of(tmp_path, ROTATION.format(fault="{kind: cert-rotation, what: ca, at: 1s, hold: 1s}",
                                                 expect="{kind: mtls, rotated: true}")) == []


@pytest.mark.parametrize(("authorization", "rejects", "refused"), [
    ("declared", "[plaintext]", True), ("declared", "[untrusted]", False), ("cluster", "[plaintext]", False)])
def test_a_delay_in_a_refusal_test_under_the_declared_admission_is_refused_at_its_line(
        tmp_path: Path, authorization: str, rejects: str, refused: bool) -> None:
    """Linkerd's fault backend is outside the mesh: with every service admitting only its declared callers
    (a refusal test playing a plaintext peer, authorization: declared), the requests it forwards would be
    refused. Said at the fault's line, before anything is written."""
    env_file = tmp_path / "env.yaml"
    env_file.write_text(ENV.replace("mesh: local", "mesh: linkerd").replace(
        "  mtls: strict", f"  mtls: strict\n  linkerd: {{namespace: shop, authorization: {authorization}}}"))
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(SUITE.split("      policy:", maxsplit=1)[0] + f"""\
      faults:
        - {{kind: http-delay, target: {{service: ratings}}, delay: 100ms, percent: 50}}
      expect:
        - {{kind: mtls, window: fault, rejects: {rejects}}}
""")
    env = load_environment(env_file)
    found = [str(p) for p in check_suite(load_suite(suite_file), env.model, str(env_file), env.positions,
                                         kube_scope=False)]
    hit = [p for p in found if "http-delay in a refusal test under linkerd.authorization: declared" in p]
    assert bool(hit) is refused, found
    if refused:
        assert hit[0].startswith(f"{suite_file}:8:"), hit


def test_policy_a_mesh_cannot_hold_is_refused_at_its_field(tmp_path: Path) -> None:
    """mesh: consul has no per-try timeout and no retry budget: the environment's call and the experiment's
    override are refused at the very field, in their own files (nothing starts)."""
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
      calls:
        - to: api
          retries: {attempts: 2, on: [5xx], per_try_timeout: 1s}
    - name: api
""")
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text("""\
apiVersion: harness/v1
kind: Suite
metadata: {name: s}
spec:
  environment: env.yaml
  experiments:
    - name: e
      policy:
        - {from: web, to: api, circuit_breaker: {max_retries: 3}}
      expect:
        - {kind: slo, signal: success_rate, scope: client, window: fault, min: 0.9}
""")
    from harness.model.loader import load_environment, load_suite
    from harness.runner.checks import check_suite

    env = load_environment(env_file)
    found = [str(p) for p in check_suite(load_suite(suite_file), env.model, str(env_file), env.positions,
                                         kube_scope=False)]
    assert any(p.startswith(f"{env_file}:12:") and "retries.per_try_timeout" in p and "no per-try timeout" in p
               for p in found), found
    assert any(p.startswith(f"{suite_file}:9:") and "circuit_breaker.max_retries" in p for p in found), found


def test_what_consul_cannot_hold_of_a_whole_environment_or_suite_is_refused_at_its_line(tmp_path: Path) -> None:
    """Two callers of one service declaring different retries, mtls other than strict, metrics a datacenter
    cannot be read by, two overrides towards one callee's router, a rotation's hold, and what a datacenter
    refuses (an HTTP fault, kill): each at its own line, nothing started."""
    env_file = tmp_path / "env.yaml"
    env_file.write_text("""\
apiVersion: harness/v1
kind: Environment
metadata: {name: c}
spec:
  mesh: consul
  consul: {control_plane: cluster, address: "http://127.0.0.1:9"}
  gateway: {service: web}
  services:
    - name: web
      calls:
        - {to: api, retries: {attempts: 2, on: [5xx]}}
    - name: admin
      calls:
        - {to: api, retries: {attempts: 1, on: [5xx]}}
    - name: api
  mtls: permissive
  metrics: {source: envoy}
""")
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text("""\
apiVersion: harness/v1
kind: Suite
metadata: {name: s}
spec:
  environment: env.yaml
  experiments:
    - name: e
      policy:
        - {from: web, to: api, timeout: 1s, retries: {attempts: 1, on: [5xx]}}
        - {from: admin, to: api, retries: {attempts: 3, on: [5xx]}, timeout: 1s}
      faults:
        - {kind: cert-rotation, what: ca, hold: 1s}
        - {kind: http-abort, target: {service: api}, percent: 10}
        - {kind: kill, target: {service: api}}
      expect:
        - {kind: slo, signal: success_rate, scope: client, window: fault, min: 0.9}
""")
    env = load_environment(env_file)
    found = [str(p) for p in check_suite(load_suite(suite_file), env.model, str(env_file), env.positions,
                                         kube_scope=False)]

    def at(path: Path, line: int, *words: str) -> bool:
        return any(p.startswith(f"{path}:{line}:") and all(w in p for w in words) for p in found)

    assert at(env_file, 14, "web and admin declare different retries", "service-router for api"), found
    assert at(env_file, 16, "mtls: strict"), found
    assert at(env_file, 17, "datacenter's Prometheus"), found
    assert at(env_file, 7, "write gateway.url"), found
    assert at(suite_file, 10, "web->api sets another retries towards api", "write one retries for api"), found
    assert not at(suite_file, 10, "another timeout"), found  # the same timeout twice merges
    assert at(suite_file, 12, "cannot do cert-rotation: in a datacenter"), found
    assert at(suite_file, 13, "cannot do http-abort: in a datacenter"), found
    assert at(suite_file, 14, "cannot do kill: in a datacenter"), found


def test_a_consul_rotation_cannot_be_held(tmp_path: Path) -> None:
    env_file = REPO / "examples" / "consul-shop" / "environment.yaml"
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(f"""\
apiVersion: harness/v1
kind: Suite
metadata: {{name: s}}
spec:
  environment: {env_file}
  experiments:
    - name: e
      faults:
        - {{kind: cert-rotation, what: ca, hold: 1s}}
""")
    env = load_environment(env_file)
    found = [str(p) for p in check_suite(load_suite(suite_file), env.model, str(env_file), env.positions)]
    assert [p.split(": ", 1)[0] for p in found] == [f"{suite_file}:9:49"], found
    assert "cannot hold a root rotation's stages: Consul cross-signs" in found[0]
