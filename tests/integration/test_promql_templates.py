"""The PromQL templates of every mesh, evaluated by Prometheus's own engine (``promtool test rules``) on
samples shaped as each mesh exports them, against values computed by hand.

Each series grows linearly (``0+N x10``: N more every minute), so every rate is exact: N/60 per second.
A series of another workload sits beside each target's, so a template that does not select its target
shows. Needs ``promtool`` (Debian's prometheus package); skipped without it, except in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.metrics.promql import FLAGGER, TEMPLATES, render

NAMES = {"namespace": "shop", "target": "reviews-v2", "service": "reviews", "interval": "2m"}

ENVOY = [
    ('envoy_cluster_upstream_rq_total{envoy_cluster_name="out_reviews_v2"}', "0+120x10"),
    ('envoy_cluster_upstream_rq_xx{envoy_cluster_name="out_reviews_v2",envoy_response_code_class="2"}', "0+108x10"),
    ('envoy_cluster_upstream_rq_xx{envoy_cluster_name="out_reviews_v2",envoy_response_code_class="5"}', "0+12x10"),
    ('envoy_cluster_upstream_rq_total{envoy_cluster_name="out_ratings_v1"}', "0+6000x10"),
    ('envoy_cluster_upstream_rq_xx{envoy_cluster_name="out_ratings_v1",envoy_response_code_class="5"}', "0+6000x10"),
    ('envoy_cluster_upstream_rq_retry{envoy_cluster_name="out_reviews_v2"}', "0+6x10"),
    ('envoy_cluster_upstream_rq_pending_overflow{envoy_cluster_name="out_reviews_v2"}', "0+3x10"),
    ('envoy_cluster_upstream_rq_retry_overflow{envoy_cluster_name="out_reviews_v2"}', "0+3x10"),
    ('envoy_cluster_outlier_detection_ejections_active{envoy_cluster_name="out_reviews_v2"}', "1x10"),
    ('envoy_cluster_outlier_detection_ejections_active{envoy_cluster_name="out_ratings_v1"}', "5x10"),
    ('envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="out_reviews_v2",le="5"}', "0+60x10"),
    ('envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="out_reviews_v2",le="10"}', "0+108x10"),
    ('envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="out_reviews_v2",le="+Inf"}', "0+120x10"),
]

_I = 'reporter="destination",destination_workload_namespace="shop",destination_workload="reviews-v2"'
_C = 'cluster_name="outbound|9080||reviews.shop.svc.cluster.local"'
ISTIO = [
    (f'istio_requests_total{{{_I},response_code="200"}}', "0+108x10"),
    (f'istio_requests_total{{{_I},response_code="503"}}', "0+12x10"),
    # the same requests as the source reports them, and another workload: neither may count
    ('istio_requests_total{reporter="source",destination_workload_namespace="shop",'
     'destination_workload="reviews-v2",response_code="503"}', "0+600x10"),
    ('istio_requests_total{reporter="destination",destination_workload_namespace="shop",'
     'destination_workload="ratings-v1",response_code="200"}', "0+6000x10"),
    (f'istio_request_duration_milliseconds_bucket{{{_I},le="5"}}', "0+60x10"),
    (f'istio_request_duration_milliseconds_bucket{{{_I},le="10"}}', "0+108x10"),
    (f'istio_request_duration_milliseconds_bucket{{{_I},le="+Inf"}}', "0+120x10"),
    (f'envoy_cluster_upstream_rq_retry{{{_C}}}', "0+6x10"),
    ('envoy_cluster_upstream_rq_retry{cluster_name="outbound|9080||ratings.shop.svc.cluster.local"}', "0+600x10"),
    (f'envoy_cluster_upstream_rq_pending_overflow{{{_C}}}', "0+3x10"),
    (f'envoy_cluster_upstream_rq_retry_overflow{{{_C}}}', "0+3x10"),
    (f'envoy_cluster_outlier_detection_ejections_active{{{_C}}}', "1x10"),
]

_L = 'namespace="shop",deployment="reviews-v2",direction="inbound"'
LINKERD = [
    (f'response_total{{{_L},classification="success",status_code="200"}}', "0+108x10"),
    (f'response_total{{{_L},classification="failure",status_code="503"}}', "0+12x10"),
    ('response_total{namespace="shop",deployment="reviews-v2",direction="outbound",classification="failure",'
     'status_code="503"}', "0+600x10"),
    (f'request_total{{{_L}}}', "0+120x10"),
    (f'response_latency_ms_bucket{{{_L},le="5"}}', "0+60x10"),
    (f'response_latency_ms_bucket{{{_L},le="10"}}', "0+108x10"),
    (f'response_latency_ms_bucket{{{_L},le="+Inf"}}', "0+120x10"),
    ('outbound_http_route_retry_requests_total{namespace="shop",parent_name="reviews",route_name="default"}',
     "0+6x10"),
    ('outbound_http_route_retry_overflow_total{namespace="shop",parent_name="reviews",route_name="default"}',
     "0+6x10"),
    ('outbound_http_balancer_endpoints{namespace="shop",backend_name="reviews",endpoint_state="pending"}', "1x10"),
    ('outbound_http_balancer_endpoints{namespace="shop",backend_name="reviews",endpoint_state="ready"}', "3x10"),
]

# 120 requests a minute, 12 of them 5xx; 60 under 5 ms, 108 under 10 ms; 6 retries and 6 refused a minute.
EXPECTED = {"success_rate": 0.9, "throughput": 2.0, "retries": 0.1, "overflow": 0.1, "ejections": 1.0}
QUANTILES = {0.5: 5.0, 0.9: 10.0}
TARGETS = {"envoy": {**NAMES, "target": "out_reviews_v2"}, "istio": NAMES, "linkerd": NAMES}
SERIES = {"envoy": ENVOY, "istio": ISTIO, "linkerd": LINKERD}


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("MESH_HARNESS_CI"):
            pytest.fail("no promtool on PATH: CI installs Debian's prometheus for this test")
        pytest.skip("no promtool on PATH (Debian: apt install prometheus)")
    return found


def _check(tmp_path: Path, mesh: str, cases: list[tuple[str, float]]) -> None:
    test: dict[str, Any] = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in SERIES[mesh]],
            "promql_expr_test": [{"expr": expr, "eval_time": "5m", "exp_samples": [{"labels": "{}", "value": value}]}
                                 for expr, value in cases],
        }],
    }
    path = tmp_path / f"{mesh}.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    done = subprocess.run([_promtool(), "test", "rules", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("mesh", sorted(TEMPLATES))
def test_every_signal_of_a_mesh_reads_the_true_value(tmp_path: Path, mesh: str) -> None:
    names = TARGETS[mesh]
    cases = [(render(mesh, signal, **names), value) for signal, value in EXPECTED.items()]
    cases += [(render(mesh, "latency", quantile=q, **names), ms) for q, ms in QUANTILES.items()]
    _check(tmp_path, mesh, cases)


@pytest.mark.parametrize("mesh", sorted(FLAGGER))
def test_flaggers_built_ins_read_the_same_numbers_in_their_units(tmp_path: Path, mesh: str) -> None:
    """request-success-rate is a percentage, request-duration the p99 in ms: the numbers Flagger reads."""
    cases = [(render(mesh, "request-success-rate", **NAMES), 90.0),
             (render(mesh, "request-duration", **NAMES), 10.0)]
    _check(tmp_path, mesh, cases)
