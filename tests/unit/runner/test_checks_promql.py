"""``promql`` asks Prometheus: refused, at its line, where the environment's metrics come from elsewhere;
``metrics: {source: prometheus}`` itself is accepted."""

from __future__ import annotations

from pathlib import Path

from harness.model.loader import load_environment, load_suite
from harness.runner.checks import check_suite

REPO = Path(__file__).resolve().parents[3]
ENV = (REPO / "environments" / "local.yaml").read_text()

SUITE = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: promql}
spec:
  experiments:
    - name: a
      faults:
        - {kind: http-abort, target: {service: ratings}, percent: 10}
      expect:
        - kind: promql
          query: sum(rate(envoy_cluster_upstream_rq_total[{{ interval }}]))
          min: 1
        - {kind: promql, query: up}
"""


def problems(tmp_path: Path, source: str) -> list[str]:
    env_file = tmp_path / "env.yaml"
    assert "metrics: {source: envoy}" in ENV
    env_file.write_text(ENV.replace("metrics: {source: envoy}", f"metrics: {{source: {source}}}"))
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(SUITE)
    env = load_environment(env_file)
    return [str(p) for p in check_suite(load_suite(suite_file), env.model, str(env_file), env.positions)]


def test_promql_on_the_envoy_source_is_refused_where_it_is_written(tmp_path: Path) -> None:
    found = problems(tmp_path, "envoy")
    suite = tmp_path / "suite.yaml"
    assert any(p.startswith(f"{suite}:10:") and "promql asks Prometheus" in p and "source: prometheus" in p
               for p in found), found


def test_on_prometheus_only_the_missing_bound_is_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, "prometheus")
    assert len(found) == 1, found
    assert ":13:" in found[0]
    assert "write min: or max:" in found[0]


def test_more_workers_than_users_is_refused_after_the_merge(tmp_path: Path) -> None:
    """Each value is valid where it is written; merged, 2 users cannot keep 4 workers busy."""
    env_file = tmp_path / "env.yaml"
    env_file.write_text(ENV)
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(SUITE.replace("  experiments:\n", "  defaults: {load: {users: 2}}\n  experiments:\n")
                          .replace("    - name: a\n", "    - name: a\n      load: {workers: 4}\n")
                          .replace("        - {kind: promql, query: up}\n", ""))
    env = load_environment(env_file)
    found = [str(p) for p in check_suite(load_suite(suite_file), env.model, str(env_file), env.positions)]
    assert any(":8:" in p and "2 users cannot keep 4 Locust workers busy" in p for p in found), found


def test_sidecar_abort_conditions_are_refused_on_prometheus(tmp_path: Path) -> None:
    """A service-scope abort_if would never fire through Prometheus: refused at its line, not ignored."""
    env_file = tmp_path / "env.yaml"
    env_file.write_text(ENV.replace("metrics: {source: envoy}", "metrics: {source: prometheus}"))
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(SUITE.replace("        - {kind: promql, query: up}\n", "").replace(
        "    - name: a\n", "    - name: a\n      abort_if:\n        - {signal: error_rate, scope: \"service:ratings\", "
        "above: 0.5}\n        - {signal: error_rate, above: 0.5}\n"))
    env = load_environment(env_file)
    found = [str(p) for p in check_suite(load_suite(suite_file), env.model, str(env_file), env.positions)]
    assert len(found) == 1, found
    assert ":8:" in found[0]
    assert "watch scope: client" in found[0]
