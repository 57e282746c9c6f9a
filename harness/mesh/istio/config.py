"""The Istio objects in force, as istiod reads them: one YAML file per object in its config directory.

The directory is the local control plane's API server. Each object lives in ``<Kind>_<ns>_<name>.yaml``;
a change writes a whole file (a temporary name istiod ignores, then a rename, so istiod never reads half
an object), and its undo writes back the exact text that was there, or removes the file the change
created. Like a resourceVersion, the text a change expects to find is checked first: an object someone
else changed in between is reported, never overwritten.

The user's own ``istio.config`` files (a cluster's VirtualServices, DestinationRules,
PeerAuthentications) replace the policy objects the harness would derive from ``services:``.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from harness._errors import FaultError, InputError, MeshError
from harness.mesh.istio.objects import key_of

__all__ = ["POLICY_KINDS", "ConfigDir", "Conflict", "digest", "dump", "load_user_config"]

API_GROUPS = {"VirtualService": "networking.istio.io", "DestinationRule": "networking.istio.io",
              "Sidecar": "networking.istio.io", "EnvoyFilter": "networking.istio.io", "Gateway": "networking.istio.io",
              "ServiceEntry": "networking.istio.io", "WorkloadEntry": "networking.istio.io",
              "PeerAuthentication": "security.istio.io", "AuthorizationPolicy": "security.istio.io"}
POLICY_KINDS = frozenset(API_GROUPS)
"""Kinds a user's ``istio.config`` file may hold (istiod drops an object of an unknown group silently)."""


class Conflict(FaultError):
    """An object is not what a change expected: someone else changed it since (reported, not overwritten)."""


class _Plain(yaml.SafeDumper):
    """YAML without anchors and aliases (``&id001``/``*id001``), as a person writes an object."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(obj: dict[str, Any]) -> str:
    return yaml.dump(obj, Dumper=_Plain, sort_keys=False, width=120)


def digest(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()[:16]


def file_name(key: str) -> str:
    return key.replace("/", "_") + ".yaml"


class ConfigDir:
    """The objects istiod reads, one file each."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, key: str) -> str | None:
        try:
            return (self.path / file_name(key)).read_text()
        except FileNotFoundError:
            return None

    def write(self, key: str, text: str | None) -> None:
        """Make the object's file hold ``text`` (None: remove it), atomically for istiod's watcher."""
        path = self.path / file_name(key)
        if text is None:
            path.unlink(missing_ok=True)
            return
        tmp = path.with_suffix(".tmp")  # not *.yaml: istiod's watcher ignores it
        tmp.write_text(text)
        os.replace(tmp, path)

    def swap(self, key: str, expect: str | None, text: str | None) -> bool:
        """Write ``text`` where the object holds ``expect``; nothing where it holds ``text`` already (a
        change made twice, an undo replayed); Conflict otherwise. True when something was written."""
        current = self.read(key)
        if current == text:
            return False
        if current != expect:
            raise Conflict(f"{key} changed since mesh-harness read it (it expected version {digest(expect)}, found "
                           f"{digest(current)} in {self.path / file_name(key)}); it was left as it is: compare the "
                           "two, keep the one you want, then run mesh-harness cleanup again")
        self.write(key, text)
        return True

    def objects(self) -> Iterator[dict[str, Any]]:
        for path in sorted(self.path.glob("*.yaml")):
            try:
                obj = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError) as exc:
                raise MeshError(f"{path} cannot be read as an Istio object ({exc}); it was changed by hand: put "
                                "it back, or run mesh-harness down and up") from None
            if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict) and isinstance(obj.get("spec"), dict):
                yield obj

    def get(self, key: str) -> dict[str, Any] | None:
        text = self.read(key)
        obj = yaml.safe_load(text) if text else None
        return obj if isinstance(obj, dict) else None


def load_user_config(patterns: list[str], base: Path, namespace: str) -> list[dict[str, Any]]:
    """The objects in the user's ``istio.config`` files (globs relative to the environment file), each
    given the environment's namespace when it names none; InputError naming the file for anything that is
    not an Istio object this driver understands."""
    out: list[dict[str, Any]] = []
    for pattern in patterns:
        matched = sorted(glob.glob(str(base / pattern))) if not os.path.isabs(pattern) else sorted(glob.glob(pattern))
        if not matched:
            raise InputError(f"istio.config: {pattern} matches no file (relative to {base})")
        for name in matched:
            try:
                docs = list(yaml.safe_load_all(Path(name).read_text()))
            except (OSError, yaml.YAMLError) as exc:
                raise InputError(f"{name}: cannot be read as YAML: {exc}") from None
            for n, doc in enumerate(docs, 1):
                if doc is None:
                    continue
                kind = doc.get("kind") if isinstance(doc, dict) else None
                meta = doc.get("metadata") if isinstance(doc, dict) else None
                if not isinstance(kind, str) or kind not in POLICY_KINDS or not isinstance(meta, dict) \
                        or not isinstance(meta.get("name"), str) or not isinstance(doc.get("spec"), dict):
                    raise InputError(f"{name}: document {n} is not an Istio object with kind, metadata.name and "
                                     f"spec (kinds read: {', '.join(sorted(POLICY_KINDS))})")
                group = str(doc.get("apiVersion", "")).split("/", 1)[0]
                if group != API_GROUPS[kind]:
                    raise InputError(f"{name}: document {n} ({kind} {meta['name']}) has apiVersion "
                                     f"{doc.get('apiVersion')!r}; istiod reads {kind} only as {API_GROUPS[kind]}/..., "
                                     f"e.g. apiVersion: {API_GROUPS[kind]}/v1")
                doc["metadata"].setdefault("namespace", namespace)
                out.append(doc)
    keys = [key_of(o) for o in out]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise InputError(f"istio.config declares {', '.join(dupes)} more than once: keep one of each")
    return out
