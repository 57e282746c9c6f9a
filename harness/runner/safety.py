"""Safety settings checked before anything is applied: which Kubernetes context and namespace a run
may touch. A chaos tool pointed at the wrong cluster is the incident; this check runs first, always.

The local mesh has no context to check, nor does a control plane the harness runs itself
(``control_plane: local``). For ``istio`` and ``linkerd`` environments the kube context
in force (``$KUBECONFIG``'s first file, else ``~/.kube/config``) must be one of
``safety.allowed_contexts`` and its namespace one of ``safety.allowed_namespaces`` when those lists are
given, and an Istio environment's ``istio.namespace`` (where the driver writes) one of the latter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness._errors import Problem
from harness.model.environment import Environment, IstioSettings, LinkerdSettings
from harness.model.loader import Positions

__all__ = ["KubeContext", "current_kube_context", "kube_scope_problems"]


@dataclass(frozen=True)
class KubeContext:
    name: str
    namespace: str


def current_kube_context(environ: dict[str, str] | None = None) -> KubeContext | None:
    """The context kubectl would use, or None if there is no readable kubeconfig."""
    env = os.environ if environ is None else environ
    first = (env.get("KUBECONFIG") or "").split(os.pathsep)[0]
    path = Path(first) if first else Path.home() / ".kube" / "config"
    try:
        config: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(config, dict) or not config.get("current-context"):
        return None
    name = str(config["current-context"])
    namespace = "default"
    for ctx in config.get("contexts") or []:
        if isinstance(ctx, dict) and ctx.get("name") == name:
            namespace = str((ctx.get("context") or {}).get("namespace") or "default")
    return KubeContext(name, namespace)


def kube_scope_problems(env: Environment, pos: Positions, context: KubeContext | None) -> list[Problem]:
    """Refuse a kube context or namespace the environment does not allow; nothing for the local mesh."""
    spec = env.spec
    if spec.mesh in ("local", "compose"):
        return []
    settings = spec.istio if spec.mesh == "istio" else spec.consul if spec.mesh == "consul" else None
    if settings is not None and settings.control_plane == "local":
        return []  # the harness's own control plane: no kube context is touched
    safety = spec.safety
    problems = []
    if spec.mesh in ("istio", "linkerd") and not safety.allowed_contexts:
        problems.append(pos.problem(("spec", "safety", "allowed_contexts"),
                                    f"{'an Istio' if spec.mesh == 'istio' else 'a Linkerd'} cluster is changed only "
                                    "where the environment allows: list the kube contexts it may touch, e.g. "
                                    "safety: {allowed_contexts: [staging]}"))
    named = ((spec.istio or IstioSettings()) if spec.mesh == "istio"
             else (spec.linkerd or LinkerdSettings()) if spec.mesh == "linkerd" else None)
    if named is not None:
        # The driver acts in the namespace the environment names, whatever the context's default is.
        if safety.allowed_namespaces and named.namespace not in safety.allowed_namespaces:
            problems.append(pos.problem(("spec", spec.mesh, "namespace"),
                                        f"the {spec.mesh} driver would act in namespace '{named.namespace}', which "
                                        f"is not in safety.allowed_namespaces {safety.allowed_namespaces}"))
        context_namespace_matters = False
    else:
        context_namespace_matters = True
    if safety.allowed_contexts:
        if context is None:
            problems.append(pos.problem(("spec", "safety", "allowed_contexts"),
                                        "no kube context is configured (KUBECONFIG / ~/.kube/config); "
                                        f"expected one of {safety.allowed_contexts}"))
        elif context.name not in safety.allowed_contexts:
            problems.append(pos.problem(("spec", "safety", "allowed_contexts"),
                                        f"the current kube context '{context.name}' is not allowed; switch "
                                        f"with `kubectl config use-context` to one of {safety.allowed_contexts}"))
    if context_namespace_matters and safety.allowed_namespaces and context is not None \
            and context.namespace not in safety.allowed_namespaces:
        problems.append(pos.problem(("spec", "safety", "allowed_namespaces"),
                                    f"namespace '{context.namespace}' of context '{context.name}' is not allowed; "
                                    f"expected one of {safety.allowed_namespaces}"))
    return problems
