"""Kubernetes safety scope: refuse any context or namespace the environment does not allow."""

from __future__ import annotations

from pathlib import Path

from harness.model.environment import Environment
from harness.model.loader import Positions
from harness.runner.safety import KubeContext, current_kube_context, kube_scope_problems

KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: staging
contexts:
  - name: staging
    context: {cluster: s, user: u, namespace: shop}
  - name: prod
    context: {cluster: p, user: u}
"""


def _env(mesh: str, contexts: list[str], namespaces: list[str], istio: dict[str, str] | None = None) -> Environment:
    return Environment.model_validate({
        "apiVersion": "harness/v1", "kind": "Environment", "metadata": {"name": "e"},
        "spec": {"mesh": mesh, "gateway": {"service": "a"}, "services": [{"name": "a"}],
                 "safety": {"allowed_contexts": contexts, "allowed_namespaces": namespaces},
                 **({"istio": istio} if istio else {})},
    })


class TestCurrentContext:
    def test_reads_kubeconfig_and_namespace(self, tmp_path: Path) -> None:
        """The current context and its namespace come from $KUBECONFIG's first file."""
        cfg = tmp_path / "config"
        cfg.write_text(KUBECONFIG)
        assert current_kube_context({"KUBECONFIG": f"{cfg}:/nonexistent"}) == KubeContext("staging", "shop")

    def test_missing_kubeconfig_is_none(self, tmp_path: Path) -> None:
        """No kubeconfig means no context, not an exception."""
        assert current_kube_context({"KUBECONFIG": str(tmp_path / "nope")}) is None


class TestScope:
    def test_allowed_context_and_namespace_pass(self) -> None:
        """A context and namespace on the allow lists raise no problem."""
        env = _env("istio", ["staging"], ["shop"], {"namespace": "shop"})
        assert kube_scope_problems(env, Positions("env.yaml"), KubeContext("staging", "shop")) == []

    def test_other_context_is_refused(self) -> None:
        """The production context is refused when only staging is allowed."""
        env = _env("istio", ["staging"], [])
        [problem] = kube_scope_problems(env, Positions("env.yaml"), KubeContext("prod", "default"))
        assert "'prod' is not allowed" in problem.message

    def test_other_namespace_is_refused(self) -> None:
        """The namespace a driver acts in (its environment's, default ``default``) outside allowed_namespaces
        is refused, whatever the context's default namespace."""
        env = _env("linkerd", ["staging"], ["shop"])
        [problem] = kube_scope_problems(env, Positions("env.yaml"), KubeContext("staging", "shop"))
        assert "namespace 'default'" in problem.message

    def test_an_istio_cluster_must_name_the_contexts_it_may_touch(self) -> None:
        """With no allowed_contexts an Istio cluster environment would touch whatever context is current."""
        env = _env("istio", [], ["shop"], {"namespace": "shop"})
        [problem] = kube_scope_problems(env, Positions("env.yaml"), KubeContext("anything", "shop"))
        assert "list the kube contexts it may touch" in problem.message

    def test_a_linkerd_cluster_must_name_the_contexts_it_may_touch(self) -> None:
        """Linkerd is always a cluster: with no allowed_contexts it would touch whatever context is current."""
        env = _env("linkerd", [], [])
        [problem] = kube_scope_problems(env, Positions("env.yaml"), KubeContext("anything", "shop"))
        assert "a Linkerd cluster is changed only where the environment allows" in problem.message

    def test_no_context_with_an_allow_list_is_refused(self) -> None:
        """With allowed_contexts set, having no kube context at all is a problem too."""
        env = _env("istio", ["staging"], [])
        assert kube_scope_problems(env, Positions("env.yaml"), None)

    def test_local_mesh_has_no_kube_scope(self) -> None:
        """The local mesh never consults a kube context."""
        env = _env("local", ["staging"], ["shop"])
        assert kube_scope_problems(env, Positions("env.yaml"), KubeContext("prod", "x")) == []

    def test_an_istio_environment_is_scoped_by_the_namespace_it_names(self) -> None:
        """The istio driver writes in istio.namespace: that namespace is checked, not the context's default."""
        env = _env("istio", ["staging"], ["shop"], {"control_plane": "cluster", "namespace": "shop"})
        assert kube_scope_problems(env, Positions("env.yaml"), KubeContext("staging", "default")) == []
        env = _env("istio", ["staging"], ["shop"], {"control_plane": "cluster", "namespace": "payments"})
        [problem] = kube_scope_problems(env, Positions("env.yaml"), KubeContext("staging", "shop"))
        assert "namespace 'payments'" in problem.message

    def test_a_control_plane_the_harness_runs_has_no_kube_scope(self) -> None:
        """control_plane: local touches no cluster: no context is needed, none is checked."""
        env = _env("istio", ["staging"], ["shop"], {"control_plane": "local", "namespace": "payments"})
        assert kube_scope_problems(env, Positions("env.yaml"), None) == []
