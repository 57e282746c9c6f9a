"""The ``kube_api`` fixture: a real kube-apiserver (k8s.io/kubernetes v1.36.3 on etcd v3.6.16) holding the Istio
CRDs, spoken to with plain httpx and the fixture's kubeconfig; objects behave as in a cluster (a merge patch
bumps the generation, a stale resourceVersion is a 409 Conflict, a schema violation a 422 Invalid)."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from istiocrds import crd_file
from kubeapi import MERGE_PATCH, KubeAPI, binaries_or_skip

VS = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices"


@pytest.fixture(scope="module")
def istio_api(kube_api: KubeAPI) -> KubeAPI:
    """The API server with Istio's CRDs installed (tests/istiocrds.py) and namespace ``shop``."""
    kube_api.install_crds(crd_file(kube_api.directory))
    kube_api.create_namespace("shop")
    return kube_api


def virtual_service(name: str, **retries: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"hosts": [name], "http": [{"route": [{"destination": {"host": name, "subset": "v1"}}],
                                                "retries": {"attempts": 3, "perTryTimeout": "2s", **retries}}]}}


def test_kubeconfig_reaches_the_pinned_server(kube_api: KubeAPI) -> None:
    """The kubeconfig's server, CA and token are enough to talk to it, and it reports v1.36.3 (the build's ldflags)."""
    config = yaml.safe_load(kube_api.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    token = config["users"][0]["user"]["token"]
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    context = ssl.create_default_context(cadata=ca)
    with httpx.Client(base_url=cluster["server"], verify=context, headers={"Authorization": f"Bearer {token}"}) as c:
        version = c.get("/version").json()
        assert c.get("/api/v1/namespaces/default").status_code == 200
    assert (version["gitVersion"], version["major"], version["minor"]) == ("v1.36.3", "1", "36")
    assert cluster["server"].startswith("https://127.0.0.1:")
    assert httpx.get(f"{kube_api.url}/api/v1/namespaces", verify=context).status_code in {401, 403}  # no token


def test_istio_crds_are_established_and_served(kube_api: KubeAPI) -> None:
    """install_crds applies all 8 CRDs of the file, waits for Established, and discovery serves their kinds."""
    names = kube_api.install_crds(crd_file(kube_api.directory))
    kinds = ("destinationrules", "envoyfilters", "gateways", "serviceentries", "sidecars", "virtualservices",
             "workloadentries")
    assert set(names) == {f"{kind}.networking.istio.io" for kind in kinds} | {"peerauthentications.security.istio.io"}
    assert len(names) == 8
    networking = kube_api.call("GET", "/apis/networking.istio.io/v1")
    served = {r["name"] for r in networking["resources"] if "/" not in r["name"]}
    assert {"virtualservices", "destinationrules", "serviceentries", "workloadentries"} <= served
    security = kube_api.call("GET", "/apis/security.istio.io/v1")
    assert "peerauthentications" in {r["name"] for r in security["resources"]}
    assert kube_api.install_crds(crd_file(kube_api.directory)) == names  # applying again replaces them


def test_virtual_service_merge_patch_and_read_back(istio_api: KubeAPI) -> None:
    """A VirtualService is created, JSON-merge-patched (generation 1 -> 2), and read back with the patch."""
    created = istio_api.call("POST", VS, virtual_service("reviews"))
    assert created["metadata"]["generation"] == 1
    patch = {"spec": {"http": [{"route": [{"destination": {"host": "reviews", "subset": "v2"}}],
                                "retries": {"attempts": 5, "perTryTimeout": "2s"}, "timeout": "10s"}]}}
    patched = istio_api.call("PATCH", f"{VS}/reviews", patch, content_type=MERGE_PATCH)
    assert patched["metadata"]["generation"] == 2
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    read = istio_api.call("GET", f"{VS}/reviews")
    assert read["spec"]["hosts"] == ["reviews"]
    assert read["spec"]["http"] == patch["spec"]["http"]
    assert read["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]


def test_stale_resource_version_is_a_conflict(istio_api: KubeAPI) -> None:
    """A replace at a resourceVersion someone else has since moved past is refused with 409 Conflict."""
    stale = istio_api.call("POST", VS, virtual_service("ratings"))
    istio_api.call("PATCH", f"{VS}/ratings", {"spec": {"http": [{"timeout": "7s", "route": [
        {"destination": {"host": "ratings"}}]}]}}, content_type=MERGE_PATCH)
    stale["spec"]["http"][0]["timeout"] = "9s"
    response = istio_api.request("PUT", f"{VS}/ratings", stale)
    assert response.status_code == 409
    assert response.json()["reason"] == "Conflict"
    assert "the object has been modified" in response.json()["message"]
    assert istio_api.call("GET", f"{VS}/ratings")["spec"]["http"][0]["timeout"] == "7s"


def test_invalid_object_is_unprocessable(istio_api: KubeAPI) -> None:
    """``retries.attempts: "x"`` violates the CRD schema: 422 Invalid on create and on a merge patch; the stored
    object is unchanged."""
    response = istio_api.request("POST", VS, virtual_service("details", attempts="x"))
    assert response.status_code == 422
    status = response.json()
    assert status["reason"] == "Invalid"
    assert "spec.http[0].retries.attempts" in status["message"]
    assert "must be of type integer" in status["message"]
    istio_api.call("POST", VS, virtual_service("details"))
    patch = {"spec": {"http": [{"route": [{"destination": {"host": "details"}}], "retries": {"attempts": "x"}}]}}
    response = istio_api.request("PATCH", f"{VS}/details", patch, content_type=MERGE_PATCH)
    assert response.status_code == 422
    assert response.json()["reason"] == "Invalid"
    assert istio_api.call("GET", f"{VS}/details")["spec"]["http"][0]["retries"]["attempts"] == 3


def test_exit_stops_both_servers(tmp_path: Path) -> None:
    """Leaving the context stops kube-apiserver and etcd (their process groups); nothing answers afterwards."""
    etcd, apiserver = binaries_or_skip()
    with KubeAPI(tmp_path / "api", etcd=etcd, apiserver=apiserver) as api:
        processes = dict(api.processes)
        assert api.request("GET", "/readyz").text == "ok"
        assert set(api.ready_s) == {"etcd", "kube-apiserver"}
    assert {name: proc.poll() is not None for name, proc in processes.items()} == {
        "etcd": True, "kube-apiserver": True}
    for url in (f"{api.etcd_url}/health", f"{api.url}/readyz"):
        with pytest.raises(httpx.TransportError):
            httpx.get(url, timeout=1.0, verify=False)
