"""The Istio objects of a cluster, through the kubernetes client: the store ``control_plane: cluster`` uses.

It has the config directory's contract (:class:`~harness.mesh.istio.config.ConfigDir`): an object is read
as a text (its kind, name, namespace, labels, annotations and spec, in one canonical YAML form), and a
change swaps the text it expects for a new one. What the API server adds (resourceVersion, uid,
generation, managedFields, status) is not part of the text, so an object put back compares equal to the
one read. The swap is guarded twice: the object must still hold the expected text, and the write carries
the resourceVersion read with it, so a write that races another is refused by the API server (409) and
reported as a :class:`~harness.mesh.istio.config.Conflict`, never overwritten.

Only the kinds the driver reads or writes are listed (:data:`KINDS`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from harness._errors import MeshError
from harness.mesh.istio.config import Conflict, digest, dump

__all__ = ["KINDS", "KubeStore", "canonical"]

KINDS: dict[str, tuple[str, str, str]] = {
    "VirtualService": ("networking.istio.io", "v1", "virtualservices"),
    "DestinationRule": ("networking.istio.io", "v1", "destinationrules"),
    "Sidecar": ("networking.istio.io", "v1", "sidecars"),
    "Gateway": ("networking.istio.io", "v1", "gateways"),
    "ServiceEntry": ("networking.istio.io", "v1", "serviceentries"),
    "WorkloadEntry": ("networking.istio.io", "v1", "workloadentries"),
    "EnvoyFilter": ("networking.istio.io", "v1alpha3", "envoyfilters"),
    "PeerAuthentication": ("security.istio.io", "v1", "peerauthentications"),
    "AuthorizationPolicy": ("security.istio.io", "v1", "authorizationpolicies"),
}
"""Kind -> (API group, version, plural) of every Istio kind the driver reads or writes."""

READ_KINDS = ("VirtualService", "DestinationRule", "PeerAuthentication")
"""What the policy in force is read from (the harness writes only these in a cluster)."""


def _plain(value: Any) -> Any:
    """JSON as the API server gives it back: a whole float is an integer (50.0 is stored as 50)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def canonical(obj: dict[str, Any]) -> dict[str, Any]:
    """What of an object the driver compares and restores: kind, name, namespace, labels, annotations, owner
references, finalizers and spec; no server-managed fields."""
    meta = obj.get("metadata") or {}
    kept: dict[str, Any] = {"name": meta["name"], "namespace": meta.get("namespace", "default")}
    for field in ("labels", "annotations"):
        if meta.get(field):
            kept[field] = dict(meta[field])
    for field in ("ownerReferences", "finalizers"):  # a controller's (Flagger's, Argo's) claim, kept as it was
        if meta.get(field):
            kept[field] = list(meta[field])
    out: dict[str, Any] = _plain({"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": kept,
                                  "spec": obj.get("spec") or {}})
    return out


def _same(text: str | None, obj: dict[str, Any] | None) -> bool:
    if text is None or obj is None:
        return text is None and obj is None
    return canonical(yaml.safe_load(text)) == canonical(obj)


class KubeStore:
    """Istio objects of one cluster (the kube context of ``api_client``), in the ConfigDir's terms."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        import urllib3
        from kubernetes import client  # the driver's cluster path only; plan without a cluster never gets here

        self.api_client = api_client
        """The client of the context (the driver reads the namespace's pods through it too)."""
        self.api: Any = client.CustomObjectsApi(api_client)  # its typed stubs disagree with its JSON dicts
        self.namespace = namespace
        self._errors = client.ApiException
        self._unreachable: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, OSError)
        self._server = getattr(getattr(api_client, "configuration", None), "host", "the API server")

    def _lost(self, exc: BaseException) -> MeshError:
        return MeshError(f"cannot reach the cluster's API server at {self._server}: {exc}")

    @classmethod
    def from_kubeconfig(cls, namespace: str, context: str | None = None) -> KubeStore:
        """The store of the current (or named) kube context; MeshError when there is none to reach."""
        from kubernetes import config

        from harness.mesh.kube.rest import kubeconfig_files

        new_client: Any = config.new_client_from_config
        try:
            api_client = new_client(config_file=kubeconfig_files(), context=context)
        except Exception as exc:  # the client raises ConfigException, TypeError or OSError alike
            raise MeshError(f"no kube context to reach ({exc}); set KUBECONFIG or ~/.kube/config") from None
        return cls(api_client, namespace)

    def _where(self, key: str) -> tuple[str, str, str, str, str]:
        kind, namespace, name = key.split("/", 2)
        if kind not in KINDS:
            raise MeshError(f"{kind} is not a kind the istio driver writes")
        group, version, plural = KINDS[kind]
        return group, version, namespace, plural, name

    def _get(self, key: str) -> dict[str, Any] | None:
        group, version, namespace, plural, name = self._where(key)
        try:
            found: dict[str, Any] = self.api.get_namespaced_custom_object(group, version, namespace, plural, name)
        except self._errors as exc:
            if exc.status == 404:
                return None
            raise MeshError(f"reading {key} from the cluster failed: {exc.status} {exc.reason}") from None
        except self._unreachable as exc:
            raise self._lost(exc) from None
        return found

    def read(self, key: str) -> str | None:
        obj = self._get(key)
        return None if obj is None else dump(canonical(obj))

    def get(self, key: str) -> dict[str, Any] | None:
        obj = self._get(key)
        return None if obj is None else canonical(obj)

    def swap(self, key: str, expect: str | None, text: str | None) -> bool:
        """Make the object hold ``text`` (None: delete it) where it holds ``expect``; nothing where it holds
        ``text`` already; Conflict when it holds anything else, or changes between the read and the write."""
        current = self._get(key)
        if _same(text, current):
            return False
        if not _same(expect, current):
            found = None if current is None else dump(canonical(current))
            raise Conflict(f"{key} changed in the cluster since mesh-harness read it (expected version "
                           f"{digest(expect)}, found {digest(found)}); it was left as it is: compare the two, keep "
                           "the one you want, then run mesh-harness cleanup again")
        group, version, namespace, plural, name = self._where(key)
        try:
            if text is None:
                assert current is not None
                self.api.delete_namespaced_custom_object(
                    group, version, namespace, plural, name,
                    body={"preconditions": {"resourceVersion": current["metadata"]["resourceVersion"]}})
            elif current is None:
                self.api.create_namespaced_custom_object(group, version, namespace, plural, yaml.safe_load(text))
            else:
                body = yaml.safe_load(text)
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                self.api.replace_namespaced_custom_object(group, version, namespace, plural, name, body)
        except self._errors as exc:
            if exc.status == 409:
                raise Conflict(f"{key} was changed in the cluster while mesh-harness wrote it (409 Conflict); it "
                               "was left as the other writer made it: compare, then run mesh-harness cleanup "
                               "again") from None
            raise MeshError(f"writing {key} to the cluster failed: {exc.status} {exc.reason}: "
                            f"{(exc.body or '')[:500]}") from None
        except self._unreachable as exc:
            raise self._lost(exc) from None
        return True

    def objects(self) -> Iterator[dict[str, Any]]:
        """The VirtualServices, DestinationRules and PeerAuthentications of the namespace."""
        for kind in READ_KINDS:
            group, version, plural = KINDS[kind]
            try:
                listed = self.api.list_namespaced_custom_object(group, version, self.namespace, plural)
            except self._errors as exc:
                raise MeshError(f"listing {plural} in {self.namespace} failed: {exc.status} {exc.reason}") from None
            except self._unreachable as exc:
                raise self._lost(exc) from None
            for item in listed.get("items", []):
                yield canonical(item)
