"""The linkerd driver against a real Kubernetes API server (etcd + kube-apiserver) with Linkerd's CRDs
installed, through the kubernetes client and a kube context:

* a fault (its backend and HTTPRoute), a shift (an HTTPRoute) and a policy change (Service annotations) are
  accepted by the API server, which validates each object against Linkerd's and the Gateway API's schemas
  (CEL rules included), and undone to a namespace equal to the one before; also twice, and from a fresh
  driver;
* an annotation someone else changed meanwhile is reported, not overwritten;
* each gotcha is refused before anything is written: a ServiceProfile with routes, an older route on the
  Service, a Flagger Canary's route, failure accrual under an abort, a headless Service, a missing version
  Service;
* ``apply`` waits for the route to be Accepted and the fault backend to have a pod, and says so when they
  do not come.

No Linkerd control plane and no kubelet run here: a thread plays the two controllers, writing the status
Linkerd's policy controller writes (``Accepted``) and the one a Deployment's controller writes (an available
replica). What Linkerd's proxies make of the objects is documented (reference/linkerd), not proven here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubeapi import KubeAPI
from linkerdcrds import crd_file
from meshtools import REPO, cli

from harness._errors import FaultError, MeshError
from harness.mesh import open_driver
from harness.mesh.intents import HttpFault, PolicyOverride, ProcessSignal, SplitChange
from harness.mesh.kube.rest import Conflict
from harness.mesh.linkerd.driver import LinkerdMesh
from harness.model.loader import load_environment

NS = "shop"
DECLARED = "env-declared.yaml"
"""The same environment with ``linkerd.authorization: declared``."""
ROUTES = f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes"
SERVICES = f"/api/v1/namespaces/{NS}/services"

ENVIRONMENT = """\
apiVersion: harness/v1
kind: Environment
metadata: {{name: shop-linkerd}}
spec:
  mesh: linkerd
  linkerd: {{namespace: shop}}
  gateway: {{service: web, url: "http://127.0.0.1:9"}}
  services:
    - name: web
      calls: [{{to: ratings, retries: {{attempts: 2, on: [5xx]}}}}, {{to: details}}]
    - name: details
    - name: ratings
      versions: {{v1: {{}}, v2: {{}}}}
  safety: {{allowed_contexts: [{context}], allowed_namespaces: [shop]}}
"""


def _service(name: str, annotations: dict[str, str] | None = None, headless: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"app": name.split("-", maxsplit=1)[0]},
                            "ports": [{"name": "http", "port": 9080}]}
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "annotations": annotations or {"team": "ratings"}}, "spec": spec}


class Controllers(threading.Thread):
    """Plays Linkerd's policy controller (each harness route Accepted) and the Deployment controller (each
    harness Deployment one available replica), as long as ``accepting`` is set."""

    def __init__(self, api: KubeAPI) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.accepting = threading.Event()
        self.accepting.set()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            if self.accepting.is_set():
                with contextlib.suppress(Exception):
                    self._once()
            time.sleep(0.1)

    def _once(self) -> None:
        selector = "app.kubernetes.io/managed-by=mesh-harness"
        for route in self.api.call("GET", f"{ROUTES}?labelSelector={selector}")["items"]:
            observed = [c.get("observedGeneration") for p in (route.get("status") or {}).get("parents") or []
                        for c in p.get("conditions") or []]
            if observed and all(g == route["metadata"]["generation"] for g in observed):
                continue  # the policy controller has seen this generation
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            conditions = [{"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": now,
                           "observedGeneration": route["metadata"]["generation"]} for t in ("Accepted", "ResolvedRefs")]
            route["status"] = {"parents": [{"parentRef": route["spec"]["parentRefs"][0],
                                            "controllerName": "linkerd.io/policy-controller",
                                            "conditions": conditions}]}
            self.api.call("PUT", f"{ROUTES}/{route['metadata']['name']}/status", route)
        deployments = f"/apis/apps/v1/namespaces/{NS}/deployments"
        for dep in self.api.call("GET", f"{deployments}?labelSelector={selector}")["items"]:
            if (dep.get("status") or {}).get("availableReplicas"):
                continue
            dep["status"] = {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}
            self.api.call("PUT", f"{deployments}/{dep['metadata']['name']}/status", dep)


@pytest.fixture(scope="module")
def cluster(kube_api: KubeAPI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KubeAPI, Path, Controllers]]:
    kube_api.install_crds(crd_file(kube_api.directory))
    kube_api.create_namespace(NS)
    for svc in (_service("web"), _service("details"), _service("ratings"), _service("ratings-v1"),
                _service("ratings-v2")):
        kube_api.call("POST", SERVICES, svc)
    root = tmp_path_factory.mktemp("linkerd-env")
    context = yaml.safe_load(kube_api.kubeconfig.read_text())["current-context"]
    (root / "env.yaml").write_text(ENVIRONMENT.format(context=context))
    (root / DECLARED).write_text(ENVIRONMENT.format(context=context).replace(
        "linkerd: {namespace: shop}", "linkerd: {namespace: shop, authorization: declared}"))
    controllers = Controllers(kube_api)
    controllers.start()
    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(kube_api.kubeconfig)
    settle, LinkerdMesh.push_settle_s = LinkerdMesh.push_settle_s, 0.0  # no proxies here to give time
    try:
        yield kube_api, root, controllers
    finally:
        LinkerdMesh.push_settle_s = settle
        controllers.stopping.set()
        if old is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = old


def _driver(root: Path, name: str = "env.yaml") -> LinkerdMesh:
    env = load_environment(root / name)
    driver = open_driver(env.model, env.path, root / "state")
    assert isinstance(driver, LinkerdMesh)
    return driver


@pytest.mark.parametrize("intent", [
    HttpFault("ratings", 12.5, abort_status=503),
    HttpFault("ratings", 100.0, delay_s=0.25),
    SplitChange("ratings", (("v1", 90.0), ("v2", 10.0))),
    PolicyOverride("web", "ratings", {"retries": {"attempts": 3, "on": ["5xx", "429"], "per_try_timeout": "300ms"},
                                      "timeout": "2s", "outlier_detection": {"consecutive_5xx": 4,
                                                                             "base_ejection_time": "5s"}}),
], ids=["abort", "delay", "shift", "policy"])
def test_each_change_is_accepted_by_the_api_server_and_undone_exactly(cluster: tuple[KubeAPI, Path, Controllers],
                                                                      intent: Any) -> None:
    api, root, _ = cluster
    driver = _driver(root)
    before = driver.fingerprint()
    prepared = driver.prepare(intent)
    driver.apply(prepared)
    during = driver.fingerprint()
    assert during != before
    driver.apply(prepared)  # twice: nothing more
    assert driver.fingerprint() == during
    if isinstance(intent, HttpFault):
        route = api.call("GET", f"{ROUTES}/mesh-harness-fault-ratings")
        backends = route["spec"]["rules"][0]["backendRefs"]
        if intent.percent < 100:
            assert [(b["name"], b["weight"]) for b in backends] == [("ratings", 875_000),
                                                                     ("mesh-harness-fault-ratings", 125_000)]
        else:
            assert [b["name"] for b in backends] == ["mesh-harness-fault-ratings"]  # one backend: weights ignored
        assert api.call("GET", f"{SERVICES}/mesh-harness-fault-ratings")["spec"]["ports"][0]["port"] == 8080
    elif isinstance(intent, SplitChange):
        route = api.call("GET", f"{ROUTES}/mesh-harness-split-ratings")
        assert [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]] == \
            [("ratings-v1", 900_000), ("ratings-v2", 100_000)]
    else:
        notes = api.call("GET", f"{SERVICES}/ratings")["metadata"]["annotations"]
        assert notes == {"team": "ratings", "retry.linkerd.io/http": "5xx,429", "retry.linkerd.io/limit": "3",
                         "retry.linkerd.io/timeout": "300ms", "timeout.linkerd.io/request": "2s",
                         "balancer.linkerd.io/failure-accrual": "consecutive",
                         "balancer.linkerd.io/failure-accrual-consecutive-max-failures": "4",
                         "balancer.linkerd.io/failure-accrual-consecutive-min-penalty": "5s"}
        policy = driver.policy("web", "ratings")
        assert (policy.retries, policy.retry_on, policy.per_try_timeout_s, policy.timeout_s) == \
            (3, ("5xx", "429"), 0.3, 2.0)
        assert policy.outlier is not None
        assert policy.outlier.consecutive_5xx == 4
    fresh = _driver(root)  # cleanup's way: a fresh process with only the journal's undo
    fresh.undo(prepared.undo)
    fresh.undo(prepared.undo)
    assert fresh.fingerprint() == before
    assert api.call("GET", f"{SERVICES}/ratings")["metadata"]["annotations"] == {"team": "ratings"}


def test_an_annotation_changed_by_someone_else_is_reported_not_overwritten(
        cluster: tuple[KubeAPI, Path, Controllers]) -> None:
    api, root, _ = cluster
    driver = _driver(root)
    prepared = driver.prepare(PolicyOverride("web", "details", {"timeout": "1s"}))
    driver.apply(prepared)
    api.call("PATCH", f"{SERVICES}/details", {"metadata": {"annotations": {"timeout.linkerd.io/request": "9s"}}},
             content_type="application/merge-patch+json")
    with pytest.raises(Conflict, match="changed since mesh-harness read it"):
        driver.undo(prepared.undo)
    assert api.call("GET", f"{SERVICES}/details")["metadata"]["annotations"]["timeout.linkerd.io/request"] == "9s"
    api.call("PATCH", f"{SERVICES}/details", {"metadata": {"annotations": {"timeout.linkerd.io/request": None}}},
             content_type="application/merge-patch+json")


def _refused(root: Path, intent: Any, match: str) -> None:
    driver = _driver(root)
    before = driver.fingerprint()
    with pytest.raises(FaultError, match=match):
        driver.prepare(intent)
    assert driver.fingerprint() == before


def test_a_service_profile_with_routes_is_refused(cluster: tuple[KubeAPI, Path, Controllers]) -> None:
    """While a ServiceProfile has routes, Linkerd ignores HTTPRoutes and annotations for the Service."""
    api, root, _ = cluster
    profiles = f"/apis/linkerd.io/v1alpha2/namespaces/{NS}/serviceprofiles"
    api.call("POST", profiles, {"apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile",
                                "metadata": {"name": "ratings.shop.svc.cluster.local"},
                                "spec": {"routes": [{"name": "GET /", "condition": {"method": "GET",
                                                                                    "pathRegex": "/"}}]}})
    try:
        for intent in (HttpFault("ratings", 10.0, abort_status=500), SplitChange("ratings", (("v1", 50.0),
                                                                                              ("v2", 50.0))),
                       PolicyOverride("web", "ratings", {"timeout": "1s"})):
            _refused(root, intent, "ServiceProfile ratings.shop.svc.cluster.local has routes")
    finally:
        api.call("DELETE", f"{profiles}/ratings.shop.svc.cluster.local")


def test_an_older_route_or_a_flagger_route_on_the_service_is_refused(
        cluster: tuple[KubeAPI, Path, Controllers]) -> None:
    api, root, _ = cluster
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "ratings"},
             "spec": {"parentRefs": [{"group": "core", "kind": "Service", "name": "ratings", "port": 9080}],
                      "rules": [{"backendRefs": [{"name": "ratings", "port": 9080}]}]}}
    api.call("POST", ROUTES, route)
    try:
        _refused(root, HttpFault("ratings", 10.0, abort_status=500), "HTTPRoute ratings is attached to ratings already")
        api.call("PATCH", f"{ROUTES}/ratings", {"metadata": {"annotations": {"retry.linkerd.io/http": "5xx"}}},
                 content_type="application/merge-patch+json")
        # the route's retries replace the Service's retries, not its timeout (each on its own)
        _refused(root, PolicyOverride("web", "ratings", {"retries": {"attempts": 1}}), "which replace the Service's")
        _driver(root).prepare(PolicyOverride("web", "ratings", {"timeout": "1s"}))
        api.call("PATCH", f"{ROUTES}/ratings", {"metadata": {"ownerReferences": [
            {"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "ratings",
             "uid": "6a4b1c1e-0000-4000-8000-000000000001", "controller": True}]}},
                 content_type="application/merge-patch+json")
        _refused(root, SplitChange("ratings", (("v1", 50.0), ("v2", 50.0))), "belongs to a Flagger Canary")
    finally:
        api.call("DELETE", f"{ROUTES}/ratings")


def test_failure_accrual_under_an_abort_is_refused(cluster: tuple[KubeAPI, Path, Controllers]) -> None:
    """The breaker would eject the fault backend's pod and the fault would quietly stop; a delay is allowed."""
    api, root, _ = cluster
    accrual = {"balancer.linkerd.io/failure-accrual": "consecutive"}
    api.call("PATCH", f"{SERVICES}/ratings", {"metadata": {"annotations": accrual}},
             content_type="application/merge-patch+json")
    try:
        _refused(root, HttpFault("ratings", 10.0, abort_status=500), "Failure accrual applies to every backend")
        _driver(root).prepare(HttpFault("ratings", 10.0, delay_s=0.1))
    finally:
        api.call("PATCH", f"{SERVICES}/ratings", {"metadata": {"annotations": dict.fromkeys(accrual)}},
                 content_type="application/merge-patch+json")


def test_a_headless_service_or_a_missing_version_service_is_refused(
        cluster: tuple[KubeAPI, Path, Controllers]) -> None:
    api, root, _ = cluster
    _refused(root, SplitChange("ratings", (("v1", 50.0), ("v3", 50.0))), "ratings-v3 are not in the cluster")
    api.call("DELETE", f"{SERVICES}/details")
    api.call("POST", SERVICES, _service("details", headless=True))
    try:
        _refused(root, HttpFault("details", 10.0, abort_status=500), "is headless")
    finally:
        api.call("DELETE", f"{SERVICES}/details")
        api.call("POST", SERVICES, _service("details"))


def test_apply_waits_for_the_route_to_be_accepted_and_says_when_it_is_not(
        cluster: tuple[KubeAPI, Path, Controllers], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Linkerd's policy controller the route is never Accepted: apply says so, and the undo
    (as the runner makes it on a failed apply) removes everything it wrote."""
    _, root, controllers = cluster
    monkeypatch.setattr(LinkerdMesh, "ready_timeout_s", 1.0)
    driver = _driver(root)
    before = driver.fingerprint()
    prepared = driver.prepare(SplitChange("ratings", (("v1", 50.0), ("v2", 50.0))))
    controllers.accepting.clear()
    try:
        with pytest.raises(MeshError, match=r"no status from linkerd\.io/policy-controller"):
            driver.apply(prepared)
    finally:
        controllers.accepting.set()
        driver.undo(prepared.undo)
    assert driver.fingerprint() == before


def test_plan_json_lists_every_object_with_a_cluster_and_without(cluster: tuple[KubeAPI, Path, Controllers]) -> None:
    """plan --json lists each object exactly as the driver would write it; with no kube context it still
    plans (the Service's port and the route version assumed) and says why nothing was compared."""
    api, root, _ = cluster
    suite = root / "plan.yaml"
    suite.write_text(f"""\
apiVersion: harness/v1
kind: Suite
metadata: {{name: planned}}
spec:
  environment: {root / 'env.yaml'}
  experiments:
    - name: abort
      faults: [{{kind: http-abort, target: {{service: ratings}}, percent: 25}}]
      expect: [{{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.5}}]
""")
    for env, port, compared in ((None, 9080, True), ({"KUBECONFIG": str(root / "none")}, 80, False)):
        planned = cli("plan", str(suite), "--json", state=root / "plan-state",
                      env=None if env is None else dict(os.environ, **env))
        assert planned.returncode == 0, planned.stderr
        [plan] = json.loads(planned.stdout)
        [change] = plan["experiments"][0]["faults"][0]["changes"]
        made = [item["new"] for item in change["do"]["objects"]]
        assert all(item["old"] is None for item in change["do"]["objects"])
        assert [o["kind"] for o in made] == ["ConfigMap", "Service", "Deployment", "HTTPRoute"]
        assert made[3]["spec"]["parentRefs"] == [{"group": "core", "kind": "Service", "name": "ratings", "port": port}]
        assert [item["old"]["kind"] for item in change["undo"]["objects"]] == ["HTTPRoute", "Deployment", "Service",
                                                                               "ConfigMap"]
        assert all(item["new"] is None for item in change["undo"]["objects"])
        config = yaml.safe_load(api.kubeconfig.read_text())
        here = {"context": config["current-context"], "server": config["clusters"][0]["cluster"]["server"]}
        assert change["do"]["cluster"] == (None if env else here)
        assert plan["drift"]["compared"] is compared


KILLED = """\
import sys, time
from pathlib import Path
from harness.mesh import open_driver
from harness.mesh.intents import HttpFault, PolicyOverride
from harness.model.loader import load_environment
from harness.runner.journal import Journal

env = load_environment(Path(sys.argv[1]))
driver = open_driver(env.model, env.path)
driver.push_settle_s = 0.0
journal = Journal(driver.state_dir / "journal.jsonl")
intents = driver.admission(frozenset({"plaintext"})) + [
    PolicyOverride("web", "ratings", {"timeout": "4s", "retries": {"attempts": 2}}),
    HttpFault("ratings", 40.0, abort_status=502)]
for intent in intents:
    prepared = driver.prepare(intent)
    journal.record(prepared.description, prepared.undo)  # on disk before it touches the cluster, as a run does
    driver.apply(prepared)
print("applied", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("name", ["env.yaml", DECLARED], ids=["changes", "with-admission"])
def test_a_run_killed_with_changes_in_force_is_undone_by_cleanup(cluster: tuple[KubeAPI, Path, Controllers],
                                                                 tmp_path: Path, name: str,
                                                                 request: pytest.FixtureRequest) -> None:
    """SIGKILL with a policy change and a fault in force (and, declared, every service's admission):
    ``mesh-harness cleanup`` in a fresh process puts the annotations back and removes the route, the fault
    backend and the admission's objects, from the journal alone."""
    api, root, _ = cluster
    if name == DECLARED:
        request.getfixturevalue("caller_pods")
    driver = _driver(root, name)
    before = driver.fingerprint()
    state = tmp_path / "state"
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    proc = subprocess.Popen([sys.executable, str(script), str(root / name)], cwd=REPO, text=True,
                            env=dict(os.environ, MESH_HARNESS_STATE=str(state)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "applied", proc.stderr.read() if proc.poll() is not None else ""
        assert driver.fingerprint() != before
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    done = cli("cleanup", "--env", str(root / name), state=state)
    assert done.returncode == 0, done.stdout + done.stderr
    assert driver.fingerprint() == before
    assert api.call("GET", f"{SERVICES}/ratings")["metadata"]["annotations"] == {"team": "ratings"}
    again = cli("cleanup", "--env", str(root / name), state=state)
    assert again.returncode == 0, again.stderr


def test_running_against_the_cluster_needs_its_prometheus(cluster: tuple[KubeAPI, Path, Controllers]) -> None:
    """``up`` reads the cluster through its Prometheus: without metrics.url it says what to write; the
    topology is the namespace's pods labelled app (none here: no kubelet)."""
    _, root, _ = cluster
    driver = _driver(root)
    with pytest.raises(MeshError, match=r"metrics: \{source: prometheus, url"):
        driver.up()
    assert driver.topology().nodes == ()
    assert driver.status()["running"] is True
    assert driver.down() == []


def test_a_shift_changes_its_route_in_place_step_by_step_and_undoes_each_step(
        cluster: tuple[KubeAPI, Path, Controllers], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step is prepared when it comes (as a run does) and replaces the weights of the route the first
    step made, keeping its creationTimestamp (its precedence); its undo puts the previous step back, and the
    first step's removes the route. A step is in force only once the policy controller has observed the
    route's new generation: an Accepted of the previous generation does not count."""
    api, root, controllers = cluster
    driver = _driver(root)
    before = driver.fingerprint()
    first = driver.prepare(SplitChange("ratings", (("v1", 90.0), ("v2", 10.0))))
    driver.apply(first)
    made = api.call("GET", f"{ROUTES}/mesh-harness-split-ratings")
    second = driver.prepare(SplitChange("ratings", (("v1", 50.0), ("v2", 50.0))))
    assert second.do["objects"][0]["old"] is not None
    controllers.accepting.clear()
    monkeypatch.setattr(LinkerdMesh, "ready_timeout_s", 1.0)
    with pytest.raises(MeshError, match="generation 2 not observed"):
        driver.apply(second)
    controllers.accepting.set()
    monkeypatch.setattr(LinkerdMesh, "ready_timeout_s", 60.0)
    driver.apply(second)
    now = api.call("GET", f"{ROUTES}/mesh-harness-split-ratings")
    assert now["metadata"]["creationTimestamp"] == made["metadata"]["creationTimestamp"]
    assert [b["weight"] for b in now["spec"]["rules"][0]["backendRefs"]] == [500_000, 500_000]
    driver.undo(second.undo)
    back = api.call("GET", f"{ROUTES}/mesh-harness-split-ratings")
    assert [b["weight"] for b in back["spec"]["rules"][0]["backendRefs"]] == [900_000, 100_000]
    driver.undo(first.undo)
    assert driver.fingerprint() == before


def test_an_undo_leaves_what_is_not_the_harness_and_finds_a_deleted_service_done(
        cluster: tuple[KubeAPI, Path, Controllers]) -> None:
    """A user's object under the fault backend's name: the fault is refused at apply, and its undo (as the
    journal replays it) neither touches the user's object nor fails. A Service deleted while an annotation
    change was in force took the change with it: the undo has nothing to do."""
    api, root, _ = cluster
    driver = _driver(root)
    maps = f"/api/v1/namespaces/{NS}/configmaps"
    api.call("POST", maps, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mesh-harness-fault-details"},
                            "data": {"mine": "yes"}})
    try:
        prepared = driver.prepare(HttpFault("details", 10.0, abort_status=500))
        with pytest.raises(Conflict, match="is not mesh-harness's"):
            driver.apply(prepared)
        driver.undo(prepared.undo)
        assert api.call("GET", f"{maps}/mesh-harness-fault-details")["data"] == {"mine": "yes"}
    finally:
        api.call("DELETE", f"{maps}/mesh-harness-fault-details")
    changed = driver.prepare(PolicyOverride("web", "details", {"timeout": "2s"}))
    driver.apply(changed)
    api.call("DELETE", f"{SERVICES}/details")
    try:
        driver.undo(changed.undo)
    finally:
        api.call("POST", SERVICES, _service("details"))


def test_an_undo_for_another_cluster_is_refused(cluster: tuple[KubeAPI, Path, Controllers]) -> None:
    """cleanup under another kube context would find nothing there and forget the change: it refuses."""
    _, root, _ = cluster
    driver = _driver(root)
    prepared = driver.prepare(PolicyOverride("web", "details", {"timeout": "2s"}))
    elsewhere = {**prepared.undo, "cluster": {"context": "prod", "server": "https://10.0.0.1:6443"}}
    with pytest.raises(MeshError, match="made in cluster prod"):
        driver.undo(elsewhere)


def test_the_topology_is_the_namespaces_pods_and_kill_deletes_the_chosen_ones(
        cluster: tuple[KubeAPI, Path, Controllers]) -> None:
    """As for Istio (the same code, harness.mesh.kube.pods): pods labelled app (and version) are the nodes,
    and kill deletes the chosen one, never a pod that replaced it under the same name."""
    api, root, _ = cluster
    pods = f"/api/v1/namespaces/{NS}/pods"

    def pod(name: str, app: str, version: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": app, "version": version}},
                "spec": {"containers": [{"name": app, "image": f"docker.io/buoyantio/{app}:v1"}]}}

    for name, app, version in (("ratings-v1-7f9c", "ratings", "v1"), ("web-v1-1a2b", "web", "v1")):
        api.call("POST", pods, pod(name, app, version))
    driver = _driver(root)
    try:
        assert {(n.id, n.service, n.version) for n in driver.topology().nodes} == {
            ("ratings-v1-7f9c", "ratings", "v1"), ("web-v1-1a2b", "web", "v1")}
        prepared = driver.prepare(ProcessSignal("ratings", "kill", count=1))
        driver.apply(prepared)
        assert api.request("GET", f"{pods}/ratings-v1-7f9c").status_code == 404
        api.call("POST", pods, pod("ratings-v1-7f9c", "ratings", "v1"))  # its controller's replacement
        driver.apply(prepared)
        assert api.request("GET", f"{pods}/ratings-v1-7f9c").status_code == 200
        driver.undo(prepared.undo)
    finally:
        for name in ("ratings-v1-7f9c", "web-v1-1a2b"):
            api.request("DELETE", f"{pods}/{name}")


def test_a_grpc_route_on_the_service_is_refused(cluster: tuple[KubeAPI, Path, Controllers]) -> None:
    """Linkerd sets every HTTPRoute of a Service aside while a GRPCRoute is attached to it."""
    api, root, _ = cluster
    grpc = f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/grpcroutes"
    api.call("POST", grpc, {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
                            "metadata": {"name": "ratings-grpc"},
                            "spec": {"parentRefs": [{"group": "core", "kind": "Service", "name": "ratings",
                                                     "port": 9080}],
                                     "rules": [{"backendRefs": [{"name": "ratings", "port": 9080}]}]}})
    try:
        _refused(root, HttpFault("ratings", 10.0, abort_status=500), "GRPCRoute ratings-grpc is attached")
    finally:
        api.call("DELETE", f"{grpc}/ratings-grpc")


def test_a_plaintext_probe_goes_through_the_api_servers_pod_proxy(cluster: tuple[KubeAPI, Path, Controllers]) -> None:
    """The probe asks the real API server to proxy to the pod's port; with no kubelet here the pod has no
    address, and the probe says the pod could not be reached (which the verdict reads as "cannot be told"),
    never that it was let in. The bad peers Linkerd cannot have played are said so."""
    api, root, _ = cluster
    pods = f"/api/v1/namespaces/{NS}/pods"
    api.call("POST", pods, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ratings-v1-9z8y",
                                                                            "labels": {"app": "ratings"}},
                            "spec": {"containers": [{"name": "ratings", "image": "docker.io/buoyantio/ratings:v1"}]}})
    try:
        found = _driver(root).probe_peers("ratings")
        assert {(p.instance, p.kind) for p in found} == {("ratings-v1-9z8y", k) for k in
                                                         ("plaintext", "untrusted", "wrong-identity")}
        plaintext = next(p for p in found if p.kind == "plaintext")
        assert plaintext.outcome == "unreachable", plaintext.detail
        assert all("cannot be played" in p.detail for p in found if p.kind != "plaintext")
    finally:
        api.request("DELETE", f"{pods}/ratings-v1-9z8y")


SERVERS = f"/apis/policy.linkerd.io/v1beta3/namespaces/{NS}/servers"
AUTHNS = f"/apis/policy.linkerd.io/v1alpha1/namespaces/{NS}/meshtlsauthentications"
AUTHZ = f"/apis/policy.linkerd.io/v1alpha1/namespaces/{NS}/authorizationpolicies"
PROXY = {"name": "linkerd-proxy", "image": "cr.l5d.io/linkerd/proxy:edge-26.8.3"}
"""What Linkerd's injector adds to a meshed pod (no kubelet runs it here)."""
CALLER_PODS = (("web-6d5f", "web", "web"), ("details-1c2d", "details", ""), ("ratings-v1-4e5f", "ratings", "ratings"))
"""(pod, app, ServiceAccount): details runs as the namespace's default account (none named)."""


@pytest.fixture
def caller_pods(cluster: tuple[KubeAPI, Path, Controllers]) -> Iterator[None]:
    """A pod of each service, each running as its ServiceAccount, as the admission reads them; removed after
    the test (the other tests count the namespace's pods)."""
    api = cluster[0]
    try:
        _caller_pods(api)
        yield
    finally:
        for name, _, _ in CALLER_PODS:
            api.request("DELETE", f"/api/v1/namespaces/{NS}/pods/{name}")


def _caller_pods(api: KubeAPI) -> None:
    for name, app, account in CALLER_PODS:
        spec: dict[str, Any] = {"containers": [{"name": app, "image": f"docker.io/buoyantio/{app}:v1",
                                                "ports": [{"name": "http", "containerPort": 9080}]}, PROXY]}
        if account:
            spec["serviceAccountName"] = account
        if api.request("GET", f"/api/v1/namespaces/{NS}/pods/{name}").status_code == 404:
            api.call("POST", f"/api/v1/namespaces/{NS}/pods", {"apiVersion": "v1", "kind": "Pod",
                                                                "metadata": {"name": name, "labels": {"app": app}},
                                                                "spec": spec})


@pytest.mark.usefixtures("caller_pods")
def test_the_declared_admission_is_accepted_by_the_api_server_and_undone_exactly(
        cluster: tuple[KubeAPI, Path, Controllers]) -> None:
    """Each service takes only its declared callers' ServiceAccounts (read from their pods) over mTLS, the
    gateway's any meshed caller; the API server validates the objects against Linkerd's schemas, and the
    undo, from a fresh driver, leaves the namespace as it was. Without ``authorization: declared`` there is
    nothing to write."""
    api, root, _ = cluster
    plaintext = frozenset({"plaintext"})
    assert _driver(root).admission(plaintext) == []
    driver = _driver(root, DECLARED)
    assert driver.admission(frozenset({"untrusted", "wrong-identity"})) == []  # neither can be played here
    intents = driver.admission(plaintext)
    assert [(i.service, i.callers, i.entry) for i in intents] == [
        ("web", (), True), ("details", ("web",), False), ("ratings", ("web",), False)]
    before = driver.fingerprint()
    prepared = [driver.prepare(i) for i in intents]
    for p in prepared:
        driver.apply(p)
        driver.apply(p)  # twice: nothing more
    assert "only web over mTLS (ServiceAccounts web" in prepared[2].description
    assert "any caller that authenticates with mTLS" in prepared[0].description
    web = api.call("GET", f"{SERVERS}/mesh-harness-admit-web-9080")["spec"]
    assert (web["podSelector"], web["port"], web["accessPolicy"]) == ({"matchLabels": {"app": "web"}}, 9080,
                                                                      "all-authenticated")
    ratings = api.call("GET", f"{SERVERS}/mesh-harness-admit-ratings-9080")["spec"]
    assert (ratings["port"], ratings["accessPolicy"]) == (9080, "deny")
    assert api.call("GET", f"{AUTHNS}/mesh-harness-admit-ratings")["spec"] == {
        "identityRefs": [{"kind": "ServiceAccount", "name": "web"}]}
    policy = api.call("GET", f"{AUTHZ}/mesh-harness-admit-ratings-9080")["spec"]
    assert policy["targetRef"]["name"] == "mesh-harness-admit-ratings-9080"
    assert [r["name"] for r in policy["requiredAuthenticationRefs"]] == ["mesh-harness-admit-ratings"]
    assert api.request("GET", f"{AUTHNS}/mesh-harness-admit-web").status_code == 404  # the entry names no one
    with pytest.raises(FaultError, match="outside the mesh"):  # the delay backend's requests would be refused
        driver.prepare(HttpFault("ratings", 50.0, delay_s=0.1))
    driver.prepare(HttpFault("ratings", 50.0, abort_status=503))  # an abort's backend answers by itself
    fresh = _driver(root, DECLARED)
    for p in reversed(prepared):
        fresh.undo(p.undo)
        fresh.undo(p.undo)
    assert fresh.fingerprint() == before
    assert api.call("GET", SERVERS)["items"] == []


@pytest.mark.usefixtures("caller_pods")
def test_the_admission_refuses_another_server_and_a_caller_it_cannot_name(
        cluster: tuple[KubeAPI, Path, Controllers]) -> None:
    """A Server of the user's on the same pods and port (by a label expression and a port name here): Linkerd
    admits one per pod and port, and the cluster's policy is then what is tested. A declared caller with no
    pod: its ServiceAccount cannot be read, and it would be refused once it runs."""
    api, root, _ = cluster
    [_, details, ratings] = _driver(root, DECLARED).admission(frozenset({"plaintext"}))
    pods = f"/api/v1/namespaces/{NS}/pods"
    api.call("POST", SERVERS, {"apiVersion": "policy.linkerd.io/v1beta3", "kind": "Server",
                               "metadata": {"name": "ratings-http"},
                               "spec": {"podSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                                                                              "values": ["ratings", "x"]}]},
                                        "port": "http", "accessPolicy": "all-unauthenticated"}})
    try:
        _refused(root, ratings, "Server ratings-http already covers the pods of ratings on port http")
        web = api.call("GET", f"{pods}/web-6d5f")
        api.call("DELETE", f"{pods}/web-6d5f?gracePeriodSeconds=0")
        as_default = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-6d5f-b", "labels": {"app": "web"}},
                      "spec": {"containers": web["spec"]["containers"]}}  # as the namespace's default account
        api.call("POST", pods, as_default)
        shared = _driver(root, DECLARED).prepare(details).description
        assert "web runs as ServiceAccount default, which every pod of the namespace" in shared
        api.call("DELETE", f"{pods}/web-6d5f-b?gracePeriodSeconds=0")
        as_default["spec"]["containers"] = web["spec"]["containers"][:1]  # not meshed: its calls are plaintext
        api.call("POST", pods, as_default)
        _refused(root, details, "web, a declared caller, has pods without Linkerd's proxy")
        api.call("DELETE", f"{pods}/web-6d5f-b?gracePeriodSeconds=0")
        _refused(root, details, "web, a declared caller, has no pods running")
        api.call("POST", AUTHZ, {"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "AuthorizationPolicy",
                                 "metadata": {"name": "probes"},
                                 "spec": {"targetRef": {"kind": "Namespace", "name": NS},
                                          "requiredAuthenticationRefs": [{"group": "policy.linkerd.io",
                                                                          "kind": "NetworkAuthentication",
                                                                          "name": "kubelet"}]}})
        _refused(root, details, "AuthorizationPolicy probes targets the namespace")
    finally:
        api.request("DELETE", f"{pods}/web-6d5f-b?gracePeriodSeconds=0")
        api.request("DELETE", f"{AUTHZ}/probes")
        api.call("DELETE", f"{SERVERS}/ratings-http")


@pytest.mark.usefixtures("caller_pods")
def test_plan_shows_the_admission_of_a_refusal_test(cluster: tuple[KubeAPI, Path, Controllers]) -> None:
    """An experiment with ``rejects`` under ``authorization: declared`` lists the admission's objects in
    plan --json and says in words who is admitted; with no cluster to read it still shows them, and says
    what it assumed. An experiment without rejects writes none."""
    _, root, _ = cluster
    suite = root / "refusal.yaml"
    suite.write_text(f"""\
apiVersion: harness/v1
kind: Suite
metadata: {{name: refusal}}
spec:
  environment: {root / DECLARED}
  experiments:
    - name: plaintext-refused
      expect: [{{kind: mtls, window: fault, rejects: [plaintext]}}]
    - name: no-refusal
      expect: [{{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.5}}]
""")
    for env, compared in ((None, True), ({"KUBECONFIG": str(root / "none")}, False)):
        planned = cli("plan", str(suite), "--json", state=root / "plan-state",
                      env=None if env is None else dict(os.environ, **env))
        assert planned.returncode == 0, planned.stderr
        [plan] = json.loads(planned.stdout)
        refusal, other = plan["experiments"]
        assert other["admission"] == []
        kinds = [[item["new"]["kind"] for item in change["do"]["objects"]] for change in refusal["admission"]]
        assert kinds == [["Server"], ["MeshTLSAuthentication", "AuthorizationPolicy", "Server"],
                         ["MeshTLSAuthentication", "AuthorizationPolicy", "Server"]]
        text = cli("plan", str(suite), state=root / "plan-state", env=None if env is None else dict(os.environ, **env))
        assert "admission (before baseline, removed after recovery): admission of ratings" in text.stdout
        assert ("assumed, nothing checked" in text.stdout) is not compared
    # A delay's fault backend is outside the mesh: under the admission its requests would be refused.
    delayed = root / "refusal-delay.yaml"
    delayed.write_text(suite.read_text().replace(
        "      expect: [{kind: mtls, window: fault, rejects: [plaintext]}]",
        "      faults: [{kind: http-delay, target: {service: ratings}, delay: 100ms, percent: 50}]\n"
        "      expect: [{kind: mtls, window: fault, rejects: [plaintext]}]"))
    refused = cli("plan", str(delayed), state=root / "plan-state")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"{delayed}:8:" in refused.stderr
    assert "http-delay in a refusal test under linkerd.authorization: declared" in refused.stderr
