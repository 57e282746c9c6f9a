"""Any object of a cluster, by kind, through the kubernetes client's one generic call.

The client's typed APIs each cover one group (CoreV1Api, AppsV1Api, CustomObjectsApi for custom
resources, which cannot reach the core group's ``/api/v1``). A driver that changes Services, Deployments,
ConfigMaps and Linkerd's or the Gateway API's custom resources alike would need four of them; this asks
the API server through ``ApiClient.call_api`` with the path of each kind, and always gets plain JSON back.
Errors come out as the harness's: :class:`~harness._errors.MeshError` (unreachable, refused), and
:class:`Conflict` for a 409 (a precondition or resourceVersion no longer holds).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from harness._errors import FaultError, MeshError

__all__ = ["Conflict", "Kind", "KubeRest", "NoAnswer", "kubeconfig_files"]

REQUEST_TIMEOUT_S = 15.0
"""No request to the API server waits longer: an unreachable cluster is an error, not a hang."""


class Conflict(FaultError):
    """An object is not what a change expected: someone else changed it since (reported, not overwritten)."""


class NoAnswer(MeshError):
    """A request that went out and got no answer in time (a pod that hangs, through the API server's proxy)."""


@dataclass(frozen=True)
class Kind:
    """Where the API server serves a kind: ``group`` "" is the core group (``/api/v1``)."""

    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str, name: str | None = None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{root}/namespaces/{namespace}/{self.plural}" + (f"/{name}" if name else "")


class KubeRest:
    """Get, list, create, replace, merge-patch and delete objects of the kinds given, as JSON dicts."""

    def __init__(self, api_client: Any) -> None:
        import urllib3
        from kubernetes import client

        self.api_client = api_client
        self._errors = client.ApiException
        self._unreachable: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, OSError)
        self._timeouts: tuple[type[BaseException], ...] = (urllib3.exceptions.TimeoutError, TimeoutError)
        self.server = getattr(getattr(api_client, "configuration", None), "host", "the API server")
        self._served: dict[Kind, bool] = {}

    @classmethod
    def from_kubeconfig(cls, context: str | None = None) -> KubeRest:
        """The API server of the current (or named) kube context; MeshError when there is none to reach."""
        from kubernetes import config

        new_client: Any = config.new_client_from_config
        try:
            api_client = new_client(config_file=kubeconfig_files(), context=context)
        except Exception as exc:  # the client raises ConfigException, TypeError or OSError alike
            raise MeshError(f"no kube context to reach ({exc}); set KUBECONFIG or ~/.kube/config") from None
        return cls(api_client)

    def call(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json",
             query: list[tuple[str, str]] | None = None) -> Any:
        """One request; the decoded JSON answer. 404 is None for GET and DELETE; 409 is a Conflict."""
        # The client's generic pair (kubernetes >= 33): serialize with the context's auth, then request.
        try:
            request = self.api_client.param_serialize(
                method=method, resource_path=path, query_params=query or [], body=body,
                header_params={"Accept": "application/json", "Content-Type": content_type},
                auth_settings=["BearerToken"])
            response = self.api_client.call_api(*request, _request_timeout=REQUEST_TIMEOUT_S)
            response.read()
        except self._errors as exc:
            return self._refused(method, path, exc.status, exc.reason, exc.body)
        except self._unreachable as exc:
            raise MeshError(f"cannot reach the cluster's API server at {self.server}: {exc}") from None
        if not 200 <= response.status < 300:
            return self._refused(method, path, response.status, response.reason, response.data)
        try:
            return json.loads(response.data) if response.data else None
        except ValueError:
            raise MeshError(f"{method} {path}: the API server's answer is not JSON: "
                            f"{response.data[:200]!r}") from None

    def _refused(self, method: str, path: str, status: int, reason: str, body: Any) -> None:
        if status == 404 and method in ("GET", "DELETE"):
            return
        if status == 409:
            raise Conflict(f"{method} {path}: 409 Conflict: {_message(body)}")
        raise MeshError(f"{method} {path} was refused by the API server: {status} {reason}: {_message(body)}")

    def raw(self, method: str, path: str, timeout_s: float = REQUEST_TIMEOUT_S) -> tuple[int, dict[str, str], bytes]:
        """One request whose answer is not the API server's JSON (a pod's, through its proxy): status,
        headers (lower-case names) and body, whatever the status. MeshError when nothing answers."""
        try:
            request = self.api_client.param_serialize(method=method, resource_path=path, header_params={},
                                                      auth_settings=["BearerToken"])
            response = self.api_client.call_api(*request, _request_timeout=timeout_s)
            response.read()
        except self._errors as exc:
            return int(exc.status or 0), {k.lower(): v for k, v in (exc.headers or {}).items()}, \
                (exc.body or b"") if isinstance(exc.body, bytes) else str(exc.body or "").encode()
        except self._timeouts as exc:
            raise NoAnswer(f"{method} {path}: no answer within {timeout_s:g}s ({exc})") from None
        except self._unreachable as exc:
            raise MeshError(f"{method} {path}: {exc}") from None
        return response.status, {k.lower(): v for k, v in response.getheaders().items()}, response.data or b""

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.call("GET", kind.path(namespace, name))
        return found

    def list(self, kind: Kind, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        """The namespace's objects of ``kind``; none where the API server does not serve the kind (its CRD
        is not installed), which is what a check for a user's objects wants."""
        listed = self.call("GET", kind.path(namespace), query=[("labelSelector", selector)] if selector else None)
        items: list[dict[str, Any]] = (listed or {}).get("items") or []
        return items

    def served(self, kind: Kind) -> bool:
        """Does the API server serve ``kind`` (is its CRD installed, in that version)? Asked once per kind
        for this client: the checks of every change ask it again (a GET 404 is None: not served)."""
        if kind not in self._served:
            root = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
            listed = self.call("GET", root)
            self._served[kind] = any(r.get("name") == kind.plural for r in (listed or {}).get("resources") or [])
        return self._served[kind]

    def create(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        made: dict[str, Any] = self.call("POST", kind.path(obj["metadata"].get("namespace", "default")), obj)
        return made

    def replace(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        done: dict[str, Any] = self.call("PUT", kind.path(meta.get("namespace", "default"), meta["name"]), obj)
        return done

    def merge_patch(self, kind: Kind, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386): keys set, ``None`` removes; with ``metadata.resourceVersion`` in
        the patch, the API server refuses it (409) when the object changed since."""
        done: dict[str, Any] = self.call("PATCH", kind.path(namespace, name), patch,
                                         content_type="application/merge-patch+json")
        return done

    def delete(self, kind: Kind, namespace: str, name: str, resource_version: str | None = None) -> None:
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if resource_version:
            body["preconditions"] = {"resourceVersion": resource_version}
        self.call("DELETE", kind.path(namespace, name), body)


def kubeconfig_files() -> str:
    """The kubeconfig file(s) kubectl would read now: ``$KUBECONFIG`` (several, separated as PATH is), else
    ``~/.kube/config``. Passed to the client each time: its own default is read once, when it is first
    imported, and would keep a context that has changed since (a later test's API server, a user's switch)."""
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def _message(body: Any) -> str:
    """The API server's message in an error's body (a Status object), else the body's start."""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    try:
        return str(json.loads(body).get("message", ""))[:500]
    except (TypeError, ValueError, AttributeError):
        return str(body or "")[:500]
