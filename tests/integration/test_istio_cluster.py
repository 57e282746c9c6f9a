"""The istio driver's cluster code path against a real Kubernetes API server (etcd + kube-apiserver, the
Istio CRDs installed), through the kubernetes client and the kube context of a kubeconfig:

* a fault, a shift and a policy override are written into the user's objects in the cluster, and undone
  to objects equal to those read (kind, name, labels, annotations, spec); also from a fresh driver, and
  twice; an object created for a host with none is deleted again;
* an object someone else changed meanwhile is reported, not overwritten (the API server's 409 too);
* ``plan`` compares the environment's declared Istio files with the cluster's objects, shows the
  difference, and still plans with no cluster to reach (or one it may not read), saying it could not compare;
* a kube context or namespace outside ``safety`` is refused before anything is read or written;
* the topology is the namespace's pods; ``kill`` deletes the chosen pods, never a pod that replaced one
  under the same name.

No istiod runs here: what istiod makes of the objects is what tests/integration/test_istio_*.py show.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from istiocrds import crd_file
from kubeapi import MERGE_PATCH, KubeAPI
from meshtools import cli

from harness._errors import FaultError, MeshError
from harness.mesh import open_driver
from harness.mesh.base import MeshDriver
from harness.mesh.intents import HttpFault, PolicyOverride, ProcessSignal, SplitChange
from harness.mesh.istio.config import Conflict
from harness.mesh.istio.driver import IstioMesh
from harness.model.loader import load_environment

NETWORKING = "/apis/networking.istio.io/v1/namespaces/shop"

ENVIRONMENT = """\
apiVersion: harness/v1
kind: Environment
metadata: {{name: shop-cluster}}
spec:
  mesh: istio
  istio: {{control_plane: cluster, namespace: shop, config: [istio/*.yaml]}}
  gateway: {{service: web, url: "http://127.0.0.1:9"}}
  services:
    - name: web
      calls: [{{to: ratings}}, {{to: details}}]
    - name: details
    - name: ratings
      versions: {{v1: {{}}, v2: {{}}}}
  safety: {{allowed_contexts: [{context}], allowed_namespaces: [shop]}}
"""

CLUSTER_OBJECTS = [
    {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
     "metadata": {"name": "ratings", "namespace": "shop", "labels": {"team": "ratings"},
                  "annotations": {"owner": "someone@example.com"}},
     "spec": {"hosts": ["ratings"], "http": [
         {"route": [{"destination": {"host": "ratings", "subset": "v1"}, "weight": 90},
                    {"destination": {"host": "ratings", "subset": "v2"}, "weight": 10}],
          "retries": {"attempts": 3, "retryOn": "5xx", "perTryTimeout": "0.5s"}}]}},
    {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
     "metadata": {"name": "ratings", "namespace": "shop"},
     "spec": {"host": "ratings", "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                             {"name": "v2", "labels": {"version": "v2"}}]}},
]


@pytest.fixture(scope="module")
def cluster(kube_api: KubeAPI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KubeAPI, Path]]:
    """The API server with the Istio CRDs, namespace shop holding the user's ratings objects, and an
    environment directory whose istio/ files declare the same objects but with 2 retries."""
    kube_api.install_crds(crd_file(kube_api.directory))
    kube_api.create_namespace("shop")
    for obj in CLUSTER_OBJECTS:
        kube_api.call("POST", f"{NETWORKING}/{obj['kind'].lower()}s", obj)
    root = tmp_path_factory.mktemp("cluster-env")
    (root / "istio").mkdir()
    declared = json.loads(json.dumps(CLUSTER_OBJECTS))
    declared[0]["spec"]["http"][0]["retries"]["attempts"] = 2
    (root / "istio" / "ratings.yaml").write_text(yaml.safe_dump_all(declared))
    for name, version in (("ratings-v1-7f9c", "v1"), ("ratings-v1-2b4d", "v1"), ("ratings-v2-5e6f", "v2"),
                          ("web-v1-1a2b", "v1"), ("batch-3c4d", "v1")):
        kube_api.call("POST", "/api/v1/namespaces/shop/pods", _pod(name, version))
    context = yaml.safe_load(kube_api.kubeconfig.read_text())["current-context"]
    (root / "env.yaml").write_text(ENVIRONMENT.format(context=context))
    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(kube_api.kubeconfig)
    settle, IstioMesh.push_settle_s = IstioMesh.push_settle_s, 0.0  # no istiod here to give time to push
    try:
        yield kube_api, root
    finally:
        IstioMesh.push_settle_s = settle
        if old is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = old


def _pod(name: str, version: str) -> dict[str, Any]:
    """A pod as a Deployment makes it (no kubelet here: it stays Pending, which is all the API needs)."""
    app = name.split("-", 1)[0]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": app, "version": version}},
            "spec": {"containers": [{"name": app, "image": f"docker.io/istio/examples-bookinfo-{app}:1.20"}]}}


def _driver(root: Path) -> MeshDriver:
    env = load_environment(root / "env.yaml")
    return open_driver(env.model, env.path, root / "state")


def _in_cluster(api: KubeAPI, kind: str, name: str) -> dict[str, Any] | None:
    response = api.request("GET", f"{NETWORKING}/{kind}/{name}")
    if response.status_code == 404:
        return None
    body: dict[str, Any] = response.json()
    return {"labels": body["metadata"].get("labels"), "annotations": body["metadata"].get("annotations"),
            "spec": body["spec"]}


@pytest.mark.parametrize("intent", [
    HttpFault("ratings", 30.0, at="caller", abort_status=503),
    SplitChange("ratings", (("v1", 50.0), ("v2", 50.0))),
    PolicyOverride("web", "ratings", {"retries": {"attempts": 1, "on": ["reset"]}, "timeout": "2s",
                                      "outlier_detection": {"consecutive_5xx": 2}}),
], ids=["fault", "shift", "policy"])
def test_changes_are_written_into_the_users_objects_and_undone_exactly(cluster: tuple[KubeAPI, Path],
                                                                       intent: Any) -> None:
    api, root = cluster
    before = {k: _in_cluster(api, k, "ratings") for k in ("virtualservices", "destinationrules")}
    driver = _driver(root)
    undo: dict[str, Any] = {}
    try:
        prepared = driver.prepare(intent)
        undo = json.loads(json.dumps(prepared.undo))
        driver.apply(prepared)
        after = {k: _in_cluster(api, k, "ratings") for k in ("virtualservices", "destinationrules")}
        assert after != before
        assert after["virtualservices"]["labels"] == {"team": "ratings"}  # the user's metadata is kept
        if isinstance(intent, HttpFault):
            routes = after["virtualservices"]["spec"]["http"]
            assert all(r["fault"]["abort"]["percentage"]["value"] == 30 for r in routes)
        driver.apply(prepared)  # twice: nothing more
        driver.undo(undo)
        assert {k: _in_cluster(api, k, "ratings") for k in before} == before
        driver.undo(undo)  # an undo replayed
        fresh = _driver(root)
        driver.apply(driver.prepare(intent))
        fresh.undo(undo)  # what cleanup does after a crash: a fresh driver, the JSON undo
        fresh.close()
        assert {k: _in_cluster(api, k, "ratings") for k in before} == before
    finally:
        if undo:  # the next case must find the cluster as this one did, whatever failed here
            with contextlib.suppress(Exception):
                driver.undo(undo)
        driver.close()


def test_an_object_made_for_a_host_with_none_is_deleted_again(cluster: tuple[KubeAPI, Path]) -> None:
    """details has no VirtualService in the cluster: a fault on it creates one, and the undo deletes it."""
    api, root = cluster
    driver = _driver(root)
    try:
        prepared = driver.prepare(HttpFault("details", 10.0, at="caller", delay_s=0.2))
        assert prepared.undo["objects"][0]["text"] is None
        driver.apply(prepared)
        assert _in_cluster(api, "virtualservices", "details") is not None
        driver.undo(prepared.undo)
        assert _in_cluster(api, "virtualservices", "details") is None
    finally:
        driver.close()


def test_a_change_made_by_someone_else_meanwhile_is_reported_not_overwritten(cluster: tuple[KubeAPI, Path]) -> None:
    api, root = cluster
    driver = _driver(root)
    try:
        prepared = driver.prepare(HttpFault("ratings", 30.0, at="caller", abort_status=503))
        driver.apply(prepared)
        api.call("PATCH", f"{NETWORKING}/virtualservices/ratings", {"metadata": {"labels": {"team": "other"}}},
                 content_type=MERGE_PATCH)
        with pytest.raises(Conflict, match="changed in the cluster"):
            driver.undo(prepared.undo)
        kept = _in_cluster(api, "virtualservices", "ratings")
        assert kept is not None
        assert kept["labels"] == {"team": "other"}
        assert "fault" in kept["spec"]["http"][0]
        # Put back by hand, as the message says, then the undo has nothing left to do.
        api.call("PATCH", f"{NETWORKING}/virtualservices/ratings", {"metadata": {"labels": {"team": "ratings"}}},
                 content_type=MERGE_PATCH)
        driver.undo(prepared.undo)
        restored = _in_cluster(api, "virtualservices", "ratings")
        assert restored is not None
        assert "fault" not in restored["spec"]["http"][0]
    finally:
        driver.close()


SUITE = """\
apiVersion: harness/v1
kind: Suite
metadata: {{name: s}}
spec:
  environment: ./{env}
  experiments:
    - name: a
      faults: [{{kind: http-abort, target: {{service: ratings}}, percent: 20, at: caller}}]
      expect: [{{kind: slo, signal: success_rate, scope: client, window: fault, min: 0.5}}]
"""


def _suite(root: Path, env_text: str, name: str) -> Path:
    (root / f"{name}.yaml").write_text(env_text)
    suite = root / f"suite-{name}.yaml"
    suite.write_text(SUITE.format(env=f"{name}.yaml"))
    return suite


def test_plan_compares_the_declared_files_with_the_cluster(cluster: tuple[KubeAPI, Path]) -> None:
    """The declared VirtualService has 2 retries, the cluster's 3: plan shows that difference, the cluster's
    policy as in force (3 retries on 5xx), and every object it would write, in full."""
    _, root = cluster
    suite = _suite(root, (root / "env.yaml").read_text(), "planned")
    state = root / "plan-state"
    text = cli("plan", str(suite), state=state)
    assert text.returncode == 0, text.stderr
    assert "VirtualService/shop/ratings: differs" in text.stdout
    assert "-      attempts: 3" in text.stdout
    assert "+      attempts: 2" in text.stdout
    assert "web->ratings: 3 retries on 5xx per-try 500ms" in text.stdout
    data = json.loads(cli("plan", str(suite), "--json", state=state).stdout)
    [change] = data[0]["experiments"][0]["faults"][0]["changes"]
    [written] = change["do"]["objects"]
    assert written["key"] == "VirtualService/shop/ratings"
    assert "fault:" in written["text"]
    assert "team: ratings" in written["text"]


def test_plan_without_a_cluster_shows_the_objects_and_says_it_could_not_compare(
        cluster: tuple[KubeAPI, Path]) -> None:
    """No kubeconfig at all: the plan is made from the declared files, with 2 retries in force, and says why
    nothing was compared (validate and run refuse: the safety lists name a context and there is none)."""
    _, root = cluster
    suite = _suite(root, (root / "env.yaml").read_text(), "offline")
    away = dict(os.environ, KUBECONFIG=str(root / "no-such-kubeconfig"))
    offline = cli("plan", str(suite), state=root / "offline-state", env=away)
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert "declared policy vs the mesh: not compared (no kube context is configured" in offline.stdout
    assert "web->ratings: 2 retries on 5xx" in offline.stdout
    assert "VirtualService/shop/ratings" in offline.stdout
    refused = cli("validate", str(suite), state=root / "offline-state", env=away)
    assert refused.returncode == 2
    assert "no kube context is configured" in refused.stderr


def test_a_context_or_namespace_outside_safety_is_refused(cluster: tuple[KubeAPI, Path]) -> None:
    """validate and run refuse before anything is read; plan reads nothing from that context either: it
    plans from the declared files and says why it did not compare."""
    _, root = cluster
    text = (root / "env.yaml").read_text()
    context = yaml.safe_load(cluster[0].kubeconfig.read_text())["current-context"]
    other = _suite(root, text.replace(f"allowed_contexts: [{context}]", "allowed_contexts: [prod]"), "other")
    refused = cli("validate", str(other), state=root / "other-state")
    assert refused.returncode == 2
    assert "is not allowed" in refused.stderr
    planned = cli("plan", str(other), state=root / "other-state")
    assert planned.returncode == 0, planned.stderr
    assert f"not compared (the current kube context '{context}' is not allowed" in planned.stdout
    assert "web->ratings: 2 retries on 5xx" in planned.stdout  # the declared files, not the cluster's 3
    elsewhere = _suite(root, text.replace("allowed_namespaces: [shop]", "allowed_namespaces: [payments]"), "ns")
    refused = cli("run", str(elsewhere), state=root / "ns-state")
    assert refused.returncode == 2
    assert "namespace 'shop'" in refused.stderr


def test_a_cluster_is_up_while_its_api_server_answers(cluster: tuple[KubeAPI, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The objects a change wrote outlive the harness's processes, so a cluster counts as up (and cleanup
    undoes) while its API server answers; without a kube context that may be read, asking is an error (so
    cleanup exits 3 and keeps the journal), never "gone" (which would drop the undos)."""
    _, root = cluster
    driver = _driver(root)
    try:
        assert driver.is_up()
        status = driver.status()
        assert status["running"] is True
        assert status["istio_objects"] >= 2
        assert driver.down() == []  # the harness started nothing there
    finally:
        driver.close()
    monkeypatch.setenv("KUBECONFIG", str(root / "no-such-kubeconfig"))
    away = _driver(root)
    try:
        with pytest.raises(MeshError, match="no kube context is configured"):
            away.is_up()
        assert "no kube context is configured" in away.status()["error"]
    finally:
        away.close()


def test_a_write_racing_another_is_refused_by_the_api_server(cluster: tuple[KubeAPI, Path]) -> None:
    """Between the harness's read and its write someone else writes: the write carries the resourceVersion
    read, the API server answers 409, and the harness reports a conflict, leaving the other write."""
    from harness.mesh.istio.kube import KubeStore

    api, _ = cluster
    store = KubeStore.from_kubeconfig("shop")
    key = "VirtualService/shop/ratings"
    text = store.read(key)
    assert text is not None
    stale = store._get(key)
    api.call("PATCH", f"{NETWORKING}/virtualservices/ratings", {"metadata": {"annotations": {"raced": "yes"}}},
             content_type=MERGE_PATCH)
    try:
        store._get = lambda _key: stale  # type: ignore[method-assign]  # the read the harness made before it
        with pytest.raises(Conflict, match="409"):
            store.swap(key, text, text.replace("attempts: 3", "attempts: 4"))
        kept = _in_cluster(api, "virtualservices", "ratings")
        assert kept is not None
        assert kept["annotations"]["raced"] == "yes"
        assert kept["spec"]["http"][0]["retries"]["attempts"] == 3
    finally:
        api.call("PATCH", f"{NETWORKING}/virtualservices/ratings", {"metadata": {"annotations": {"raced": None}}},
                 content_type=MERGE_PATCH)


def test_the_topology_is_the_namespaces_pods_and_kill_deletes_the_chosen_ones(cluster: tuple[KubeAPI, Path]) -> None:
    api, root = cluster
    driver = _driver(root)
    try:
        nodes = {(n.id, n.service, n.version) for n in driver.topology().nodes}
        assert nodes == {("ratings-v1-2b4d", "ratings", "v1"), ("ratings-v1-7f9c", "ratings", "v1"),
                         ("ratings-v2-5e6f", "ratings", "v2"), ("web-v1-1a2b", "web", "v1")}  # not batch: no service
        assert driver.topology().gateway_url == "http://127.0.0.1:9"
        prepared = driver.prepare(ProcessSignal("ratings", "kill", version="v1", count=1))
        assert [p["name"] for p in prepared.do["pods"]] == ["ratings-v1-2b4d"]  # none runs here: by name
        assert "delete pod ratings-v1-2b4d in shop" in prepared.description
        driver.apply(prepared)
        assert api.request("GET", "/api/v1/namespaces/shop/pods/ratings-v1-2b4d").status_code == 404
        assert api.request("GET", "/api/v1/namespaces/shop/pods/ratings-v1-7f9c").status_code == 200
        # its controller replaces it under the same name: the same kill, replayed, leaves the new pod alone
        api.call("POST", "/api/v1/namespaces/shop/pods", _pod("ratings-v1-2b4d", "v1"))
        driver.apply(prepared)
        assert api.request("GET", "/api/v1/namespaces/shop/pods/ratings-v1-2b4d").status_code == 200
        driver.undo(json.loads(json.dumps(prepared.undo)))  # nothing of the harness's to put back
        with pytest.raises(FaultError, match="3 pod"):
            driver.prepare(ProcessSignal("ratings", "kill", version="v1", count=3))
        with pytest.raises(FaultError, match="cannot be kept down"):
            driver.prepare(ProcessSignal("ratings", "kill", version="v1", restart=False))
    finally:
        driver.close()


def test_a_kill_is_planned_without_a_cluster_to_list_its_pods(cluster: tuple[KubeAPI, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _, root = cluster
    monkeypatch.setenv("KUBECONFIG", str(root / "no-such-kubeconfig"))
    driver = _driver(root)
    try:
        prepared = driver.prepare(ProcessSignal("ratings", "kill", version="v1", count=1))
        assert "delete 1 pod(s) labelled app=ratings,version=v1 in shop" in prepared.description
        assert "not listed now" in prepared.description
        with pytest.raises(MeshError, match="could not be listed"):
            driver.apply(prepared)  # deletes nothing
    finally:
        driver.close()


def test_running_against_the_cluster_needs_its_prometheus_and_gateway(cluster: tuple[KubeAPI, Path]) -> None:
    """``run`` reads the cluster through its Prometheus: without metrics.url, up says what to write."""
    _, root = cluster
    driver = _driver(root)
    try:
        with pytest.raises(MeshError, match=r"metrics: \{source: prometheus, url"):
            driver.up()
    finally:
        driver.close()
