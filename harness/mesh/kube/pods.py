"""A cluster's pods, for ``istio.control_plane: cluster``: the nodes of its topology, and ``kill`` as a pod
deletion.

A service's pods are those of the namespace labelled ``app: <service>`` (and ``version: <v>`` for one
version), the labels Istio itself reads a workload's canonical service and revision from. ``kill`` deletes
the chosen pods with no grace period (the container is killed, as SIGKILL kills a local app); each
deletion carries the pod's uid as a precondition, so a pod that has meanwhile been replaced under the same
name is never deleted by mistake. What replaces a killed pod is the cluster's business (its Deployment's
controller creates a new one, under a new name): there is nothing to undo, and the undo only records that.
"""

from __future__ import annotations

from typing import Any

from harness._errors import FaultError, MeshError
from harness.mesh.base import Prepared
from harness.mesh.intents import ProcessSignal
from harness.metrics.snapshot import NodeInfo

__all__ = ["Pods", "prepare_kill", "unlisted_kill"]


class Pods:
    """The pods of one namespace, through the kubernetes client's CoreV1Api."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        import urllib3
        from kubernetes import client

        self.api: Any = client.CoreV1Api(api_client)
        self.namespace = namespace
        self._errors = client.ApiException
        self._unreachable: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, OSError)

    def of(self, service: str, version: str | None = None) -> list[dict[str, str]]:
        """Pods of ``service`` (of one version) that can serve: not being deleted, not finished (an evicted
        or completed pod serves nothing, and deleting it kills nothing); running ones first, then by name.
        Each as ``name``, ``uid``, ``version``."""
        selector = f"app={service}" + (f",version={version}" if version else "")
        try:
            listed = self.api.list_namespaced_pod(self.namespace, label_selector=selector)
        except self._errors as exc:
            raise MeshError(f"listing the pods of {service} in {self.namespace} failed: {exc.status} "
                            f"{exc.reason}") from None
        except self._unreachable as exc:
            raise MeshError(f"cannot reach the cluster's API server: {exc}") from None
        live = [p for p in listed.items if p.metadata.deletion_timestamp is None
                and getattr(p.status, "phase", None) not in ("Succeeded", "Failed")]
        live.sort(key=lambda p: (getattr(p.status, "phase", None) != "Running", p.metadata.name))
        return [{"name": p.metadata.name, "uid": p.metadata.uid,
                 "version": (p.metadata.labels or {}).get("version", "")} for p in live]

    def nodes(self, services: list[str]) -> list[NodeInfo]:
        """Every pod of the services, as a node (what the cluster's metric source names by the pod)."""
        return [NodeInfo(p["name"], service, p["version"]) for service in services for p in self.of(service)]

    def delete(self, pods: list[dict[str, str]]) -> list[str]:
        """Delete each pod now (no grace period) if it is still the one chosen (its uid); the names deleted.
        A pod already gone, or replaced under its name, is left alone."""
        from kubernetes import client

        deleted = []
        for pod in pods:
            body = client.V1DeleteOptions(grace_period_seconds=0,
                                          preconditions=client.V1Preconditions(uid=pod["uid"]))
            try:
                self.api.delete_namespaced_pod(pod["name"], self.namespace, body=body)
            except self._errors as exc:
                if exc.status in (404, 409):  # gone already; or another pod now holds the name
                    continue
                raise MeshError(f"deleting pod {pod['name']} failed: {exc.status} {exc.reason}") from None
            except self._unreachable as exc:
                raise MeshError(f"cannot reach the cluster's API server: {exc}") from None
            deleted.append(pod["name"])
        return deleted


def unlisted_kill(intent: ProcessSignal, namespace: str, reason: str) -> Prepared:
    """The kill ``plan`` shows when the cluster's pods cannot be listed (no cluster to reach, or a context
    outside ``safety``): which pods it would delete is decided when the run lists them. Applied as it is, it
    deletes nothing and says why (a run lists the pods when it prepares, with the cluster reachable)."""
    how_many = f"{intent.count}" if intent.count is not None else (
        f"{intent.percent:g}% of the" if intent.percent is not None else "1")
    selector = f"app={intent.service}" + (f",version={intent.version}" if intent.version else "")
    return Prepared(intent, f"delete {how_many} pod(s) labelled {selector} in {namespace}, chosen (running first, "
                            f"then by name) when the run lists them (not listed now: {reason})",
                    {"op": "pod-delete", "pods": [], "unlisted": reason}, {"op": "pod-delete-undo", "pods": []})


def prepare_kill(pods: Pods, intent: ProcessSignal) -> Prepared:
    """``count`` of the service's pods (or ``percent``, at least one), running ones first, then by name."""
    if not intent.restart:
        raise FaultError(f"kill with restart: false on {intent.service}: in a cluster a killed pod's controller "
                         "replaces it at once, so it cannot be kept down; scale its Deployment instead, or leave "
                         "restart out")
    found = pods.of(intent.service, intent.version)
    n = intent.how_many(len(found))
    if n > len(found):
        raise FaultError(f"kill: {n} pod(s) of {intent.service} asked for, namespace {pods.namespace} has "
                         f"{len(found)} labelled app={intent.service}"
                         + (f",version={intent.version}" if intent.version else ""))
    chosen = [{"name": p["name"], "uid": p["uid"]} for p in found[:n]]
    names = ", ".join(p["name"] for p in chosen)
    return Prepared(intent, f"delete pod {names} in {pods.namespace} (no grace period; its controller replaces it)",
                    {"op": "pod-delete", "pods": chosen}, {"op": "pod-delete-undo", "pods": chosen})
