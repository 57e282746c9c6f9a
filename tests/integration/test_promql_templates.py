"""The PromQL templates of every mesh, evaluated by Prometheus's own engine (``promtool test rules``) on
samples shaped as each mesh exports them, against values computed by hand.

Each series grows linearly (``0+N x10``: N more every minute), so every rate is exact: N/60 per second.
Beside every family of the target's series sits one of something else (another workload or cluster, the
source reporter, the outbound direction, the same service in another namespace) with far larger values,
so a template that selects more than its target reads a visibly wrong number. Needs ``promtool``
(Debian's prometheus package); skipped without it, except in CI.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from meshtools import on_path_or_skip

from harness.metrics.promql import FLAGGER, TEMPLATES, render

NAMES = {"namespace": "shop", "target": "reviews-v2", "service": "reviews", "interval": "2m"}

def _buckets(metric: str, labels: str, counts: tuple[int, int, int, int]) -> list[tuple[str, str]]:
    """A latency histogram growing by ``counts`` a minute at le = 5, 10, 50 and +Inf (cumulative)."""
    return [(f'{metric}{{{labels},le="{le}"}}', f"0+{n}x10") for le, n in zip(("5", "10", "50", "+Inf"), counts,
                                                                              strict=True)]


TARGET_MS = (60, 108, 120, 120)
"""The target's latencies: half under 5 ms, 90% under 10 ms, all under 50 ms."""
OTHER_MS = (0, 0, 0, 6000)
"""Another workload's: all over 50 ms, and fifty times as many: counted by mistake, it moves every quantile."""

_E = 'envoy_cluster_name="out_reviews_v2"'
_EO = 'envoy_cluster_name="out_ratings_v1"'
ENVOY = [
    # final answers, 120 a minute, 12 of them 5xx; 6 retries a minute (whose answers Envoy counts apart)
    (f'envoy_cluster_upstream_rq_xx{{{_E},envoy_response_code_class="2"}}', "0+108x10"),
    (f'envoy_cluster_upstream_rq_xx{{{_E},envoy_response_code_class="5"}}', "0+12x10"),
    (f'envoy_cluster_upstream_rq_total{{{_E}}}', "0+126x10"),
    (f'envoy_cluster_retry_upstream_rq_xx{{{_E},envoy_response_code_class="5"}}', "0+6x10"),
    (f'envoy_cluster_upstream_rq_retry{{{_E}}}', "0+6x10"),
    (f'envoy_cluster_upstream_rq_pending_overflow{{{_E}}}', "0+3x10"),
    (f'envoy_cluster_upstream_rq_retry_overflow{{{_E}}}', "0+3x10"),
    (f'envoy_cluster_outlier_detection_ejections_active{{{_E}}}', "1x10"),
    *_buckets("envoy_cluster_upstream_rq_time_bucket", _E, TARGET_MS),
    # another cluster, in every family
    (f'envoy_cluster_upstream_rq_xx{{{_EO},envoy_response_code_class="5"}}', "0+6000x10"),
    (f'envoy_cluster_upstream_rq_retry{{{_EO}}}', "0+600x10"),
    (f'envoy_cluster_upstream_rq_pending_overflow{{{_EO}}}', "0+600x10"),
    (f'envoy_cluster_outlier_detection_ejections_active{{{_EO}}}', "5x10"),
    *_buckets("envoy_cluster_upstream_rq_time_bucket", _EO, OTHER_MS),
]

_I = 'reporter="destination",destination_workload_namespace="shop",destination_workload="reviews-v2"'
_IS = 'reporter="source",destination_workload_namespace="shop",destination_workload="reviews-v2"'
_IO = 'reporter="destination",destination_workload_namespace="shop",destination_workload="ratings-v1"'
_C = 'cluster_name="outbound|9080||reviews.shop.svc.cluster.local"'
_CO = 'cluster_name="outbound|9080||reviews.other.svc.cluster.local"'
ISTIO = [
    (f'istio_requests_total{{{_I},response_code="200"}}', "0+108x10"),
    (f'istio_requests_total{{{_I},response_code="503"}}', "0+12x10"),
    *_buckets("istio_request_duration_milliseconds_bucket", _I, TARGET_MS),
    (f'envoy_cluster_upstream_rq_retry{{{_C}}}', "0+6x10"),
    (f'envoy_cluster_upstream_rq_pending_overflow{{{_C}}}', "0+6x10"),
    (f'envoy_cluster_outlier_detection_ejections_active{{{_C}}}', "1x10"),
    # the same requests as the source reports them, another workload, the same service in another namespace
    (f'istio_requests_total{{{_IS},response_code="503"}}', "0+600x10"),
    *_buckets("istio_request_duration_milliseconds_bucket", _IS, OTHER_MS),
    (f'istio_requests_total{{{_IO},response_code="200"}}', "0+6000x10"),
    *_buckets("istio_request_duration_milliseconds_bucket", _IO, OTHER_MS),
    (f'envoy_cluster_upstream_rq_retry{{{_CO}}}', "0+600x10"),
    (f'envoy_cluster_upstream_rq_pending_overflow{{{_CO}}}', "0+600x10"),
    (f'envoy_cluster_outlier_detection_ejections_active{{{_CO}}}', "5x10"),
]

_L = 'namespace="shop",deployment="reviews-v2",direction="inbound"'
_LOUT = 'namespace="shop",deployment="reviews-v2",direction="outbound"'
_LO = 'namespace="shop",deployment="ratings-v1",direction="inbound"'
_P = 'namespace="shop",parent_namespace="shop",parent_name="reviews",route_name="default"'
# scraped in shop (the caller's namespace), about a service of another namespace: must not count
_PO = 'namespace="shop",parent_namespace="other",parent_name="reviews",route_name="default"'
LINKERD = [
    (f'response_total{{{_L},classification="success",status_code="200"}}', "0+108x10"),
    (f'response_total{{{_L},classification="failure",status_code="503"}}', "0+12x10"),
    (f'request_total{{{_L}}}', "0+120x10"),
    *_buckets("response_latency_ms_bucket", _L, TARGET_MS),
    (f'outbound_http_route_retry_requests_total{{{_P}}}', "0+6x10"),
    (f'outbound_http_route_retry_overflow_total{{{_P}}}', "0+6x10"),
    (f'outbound_http_balancer_endpoints{{{_P},backend_name="reviews",endpoint_state="pending"}}', "1x10"),
    (f'outbound_http_balancer_endpoints{{{_P},backend_name="reviews",endpoint_state="ready"}}', "3x10"),
    (f'response_total{{{_LOUT},classification="failure",status_code="503"}}', "0+600x10"),
    (f'request_total{{{_LOUT}}}', "0+600x10"),
    *_buckets("response_latency_ms_bucket", _LOUT, OTHER_MS),
    (f'request_total{{{_LO}}}', "0+6000x10"),
    *_buckets("response_latency_ms_bucket", _LO, OTHER_MS),
    (f'outbound_http_route_retry_requests_total{{{_PO}}}', "0+600x10"),
    (f'outbound_http_route_retry_overflow_total{{{_PO}}}', "0+600x10"),
    (f'outbound_http_balancer_endpoints{{{_PO},backend_name="reviews",endpoint_state="pending"}}', "5x10"),
]

# 120 requests a minute, 12 of them 5xx; 6 retries and 6 refused a minute; one endpoint ejected.
EXPECTED = {"success_rate": 0.9, "throughput": 2.0, "retries": 0.1, "overflow": 0.1, "ejections": 1.0}
# p50 at the 5 ms bound; p90 at 10 ms; p99 inside (10, 50]: 10 + (118.8 - 108) / (120 - 108) * 40 = 46
QUANTILES = {0.5: 5.0, 0.9: 10.0, 0.99: 46.0}
TARGETS = {"envoy": {**NAMES, "target": "out_reviews_v2"}, "istio": NAMES, "linkerd": NAMES}
SERIES = {"envoy": ENVOY, "istio": ISTIO, "linkerd": LINKERD}


def _promtool() -> str:
    return on_path_or_skip("promtool", "Debian: apt install prometheus")


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
             (render(mesh, "request-duration", **NAMES), 46.0)]
    _check(tmp_path, mesh, cases)
