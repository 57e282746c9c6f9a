"""The ``prometheus`` source's pieces: Envoy's names put back together, buckets as bins, the two views of
an instant, and the window between them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.mesh.local.prometheus import argv, promql_duration, write_config
from harness.metrics.envoy_names import LOCAL
from harness.metrics.prometheus import METRIC_NAMES, PrometheusSource, bins_from_buckets, envoy_stat, scrape_filter
from harness.metrics.snapshot import NodeInfo, Snapshot, delta
from harness.metrics.vocabulary import Listener, Upstream


@pytest.mark.parametrize(("name", "labels", "stat"), [
    ("envoy_cluster_upstream_rq_xx", {"envoy_cluster_name": "out_ratings_v1", "envoy_response_code_class": "5"},
     "cluster.out_ratings_v1.upstream_rq_5xx"),
    ("envoy_cluster_upstream_rq_total", {"envoy_cluster_name": "out_ratings_v1"},
     "cluster.out_ratings_v1.upstream_rq_total"),
    ("envoy_cluster_outlier_detection_ejections_enforced_total", {"envoy_cluster_name": "out_r_v2"},
     "cluster.out_r_v2.outlier_detection.ejections_enforced_total"),
    ("envoy_cluster_ssl_fail_verify_san", {"envoy_cluster_name": "out_r_v1"}, "cluster.out_r_v1.ssl.fail_verify_san"),
    ("envoy_http_downstream_rq_xx", {"envoy_http_conn_manager_prefix": "inbound", "envoy_response_code_class": "2"},
     "http.inbound.downstream_rq_2xx"),
    ("envoy_http_downstream_rq_completed", {"envoy_http_conn_manager_prefix": "outbound_ratings"},
     "http.outbound_ratings.downstream_rq_completed"),
    ("envoy_listener_ssl_handshake", {"envoy_listener_address": "127.0.0.1_4000"},
     "listener.127.0.0.1_4000.ssl.handshake"),
    ("envoy_cluster_upstream_rq", {"envoy_cluster_name": "out_r_v1", "envoy_response_code": "503"}, None),
    ("envoy_cluster_upstream_rq_xx", {"envoy_response_code_class": "5"}, None),
])
def test_prometheus_names_become_envoy_stat_names(name: str, labels: dict[str, str], stat: str | None) -> None:
    """Each series the vocabulary reads is put back together exactly as the admin endpoint names it."""
    assert envoy_stat(name, labels) == stat


def test_every_name_the_vocabulary_reads_is_selected() -> None:
    """The one ``__name__`` regex selects each reconstructed family (a missing one would read as 0)."""
    for needed in ("envoy_cluster_upstream_rq_xx", "envoy_cluster_upstream_rq_retry", "envoy_http_downstream_rq_xx",
                   "envoy_cluster_upstream_rq_pending_overflow", "envoy_cluster_endpoint_healthy",
                   "envoy_http_downstream_rq_time_bucket", "envoy_listener_ssl_connection_error"):
        assert needed in METRIC_NAMES


def test_buckets_become_bins_between_bounds() -> None:
    """Cumulative ``le`` counts become per-bin counts between consecutive bounds; +Inf is a finite bin."""
    assert bins_from_buckets({1.0: 2, 5.0: 7, 10.0: 7, float("inf"): 9}) == [
        (0.0, 1.0, 2), (1.0, 4.0, 5), (5.0, 5.0, 0), (10.0, 10.0, 2)]


def _snap(t: float, at: float, completed: float, bins: list[tuple[float, float, int]]) -> Snapshot:
    return Snapshot(t, envoy={"n": {"http.inbound.downstream_rq_completed": completed}},
                    hist={"n": {"http.inbound.downstream_rq_time": bins}}, at={"n": at})


def test_a_window_reads_from_the_first_sample_after_its_start() -> None:
    """The start's opening view (first sample after t) is subtracted, not the last sample before it, so
    requests of the previous phase (100 → 160) never land in the window; the span is the samples'."""
    start = _snap(10.0, 9.6, 100, [(0.0, 1.0, 100)])
    start.opening = _snap(10.0, 10.6, 160, [(0.0, 1.0, 160)])
    end = _snap(20.0, 19.6, 260, [(0.0, 1.0, 260)])
    d = delta(start, end)
    assert d.envoy["n"]["http.inbound.downstream_rq_completed"] == 100
    assert d.hist["n"]["http.inbound.downstream_rq_time"] == [(0.0, 1.0, 100)]
    assert d.span == pytest.approx(9.0)


def test_a_node_without_a_sample_inside_the_window_is_left_out() -> None:
    """First sample after the start later than the last before the end: no sample inside, no count."""
    start = _snap(10.0, 9.6, 100, [])
    start.opening = _snap(10.0, 10.9, 130, [])
    end = _snap(10.5, 9.6, 100, [])
    assert delta(start, end).envoy == {}


def test_sources_without_sample_times_keep_their_behaviour() -> None:
    """The admin source sets no ``at``: the same snapshot twice is a window of zeros, not of nothing."""
    snap = Snapshot(1.0, envoy={"n": {"x": 5.0}})
    assert delta(snap, snap).envoy == {"n": {"x": 0.0}}
    assert delta(snap, snap).span is None


class _FakePrometheus:
    """Answers the source's two queries from a fixed list of raw samples (for unit tests only)."""

    def __init__(self, samples: list[tuple[str, dict[str, str], list[tuple[float, float]]]]) -> None:
        self.samples = samples
        self.queries: list[str] = []

    def custom_query(self, query: str, params: dict[str, str]) -> list[dict[str, Any]]:
        self.queries.append(query)
        at = float(params["time"])
        if query.startswith("timestamp(up"):
            # Prometheus's answer to "timestamp(up) and up == 1": the last scrape of each instance whose
            # last scrape succeeded (an instance without up series here: its last sample of any kind).
            last: dict[str, tuple[float, float]] = {}
            for name, labels, values in self.samples:
                for ts, value in values:
                    seen = last.get(labels["instance"])
                    if ts <= at and (seen is None or ts >= seen[0]) and (name == "up" or seen is None):
                        last[labels["instance"]] = (ts, value if name == "up" else 1.0)
            return [{"metric": {"instance": i}, "value": [at, str(ts)]} for i, (ts, up) in last.items() if up == 1.0]
        return [{"metric": {"__name__": name, **labels},
                 "values": [[ts, str(v)] for ts, v in values if ts <= at]} for name, labels, values in self.samples]

    def close(self) -> None:
        pass


def test_a_snapshot_splits_raw_samples_at_its_instant(monkeypatch: pytest.MonkeyPatch) -> None:
    """One range query; per node the last sample at or before t is the end view, the first after it the
    opening view; histogram buckets and per-endpoint stats land where the admin source puts them."""
    inst = {"instance": "127.0.0.1:9001"}
    cluster = {**inst, "envoy_cluster_name": "out_ratings_v1"}
    host = {**cluster, "envoy_endpoint_address": "127.0.0.1:7000"}
    fake = _FakePrometheus([
        ("envoy_cluster_upstream_rq_total", cluster, [(998.7, 10), (999.7, 20), (1000.7, 30)]),
        ("envoy_cluster_upstream_rq_xx", {**cluster, "envoy_response_code_class": "5"}, [(999.7, 4), (1000.7, 6)]),
        ("envoy_http_downstream_rq_time_bucket", {**inst, "envoy_http_conn_manager_prefix": "inbound", "le": "5"},
         [(999.7, 3), (1000.7, 8)]),
        ("envoy_http_downstream_rq_time_bucket", {**inst, "envoy_http_conn_manager_prefix": "inbound", "le": "+Inf"},
         [(999.7, 3), (1000.7, 9)]),
        ("envoy_cluster_endpoint_rq_total", host, [(999.7, 20), (1000.7, 30)]),
        ("envoy_cluster_endpoint_healthy", host, [(999.7, 1), (1000.7, 0)]),
    ])
    monkeypatch.setattr("harness.metrics.prometheus.prometheus_client", lambda url: fake)
    source = PrometheusSource("http://127.0.0.1:1", [(NodeInfo("reviews-v1-0", "reviews", "v1"), "127.0.0.1:9001")],
                              [], 1.0, LOCAL, wait_s=0.0)
    timeline = iter([1000.0, 1001.0])  # the snapshot's instant, then every later look
    monkeypatch.setattr("time.time", lambda: next(timeline, 1001.0))
    snap = source.scrape()
    node = "reviews-v1-0"
    assert snap.t == 1000.0
    assert snap.at[node] == 999.7
    assert snap.opening is not None
    assert snap.opening.at[node] == 1000.7
    assert snap.envoy[node] == {"cluster.out_ratings_v1.upstream_rq_total": 20,
                                "cluster.out_ratings_v1.upstream_rq_5xx": 4}
    assert snap.opening.envoy[node]["cluster.out_ratings_v1.upstream_rq_total"] == 30
    assert snap.hist[node]["http.inbound.downstream_rq_time"] == [(0.0, 5.0, 3), (5.0, 5.0, 0)]
    assert snap.hosts[node]["out_ratings_v1"]["127.0.0.1:7000"] == {"rq_total": 20, "rq_error": 0.0, "ejected": 0.0}
    assert snap.opening.hosts[node]["out_ratings_v1"]["127.0.0.1:7000"]["ejected"] == 1.0
    q = snap.naming.read(snap.envoy[node], snap.hist[node], snap.hosts[node])
    assert q.upstream[Upstream("ratings", "v1")]["attempts"] == 20
    assert Listener("inbound") in q.latency
    assert '127\\\\.0\\\\.0\\\\.1:9001' in fake.queries[-1]  # the instance matched literally, dots escaped


def test_local_prometheus_config(tmp_path: Path) -> None:
    """One file-SD target per Envoy with its node's labels; the scrape asks only for what is read."""
    config = write_config(tmp_path, [(NodeInfo("gateway", "gateway", "gateway"), "127.0.0.1:9000"),
                                     (NodeInfo("reviews-v1-0", "reviews", "v1"), "127.0.0.1:9001")], 0.5, LOCAL)
    data = json.loads(config.read_text())
    job = data["scrape_configs"][0]
    assert data["global"]["scrape_interval"] == "500ms"
    assert job["metrics_path"] == "/stats/prometheus"
    assert job["params"]["filter"] == [scrape_filter(LOCAL)]
    assert "endpoint" in scrape_filter(LOCAL)
    targets = json.loads(Path(job["file_sd_configs"][0]["files"][0]).read_text())
    assert targets[1] == {"targets": ["127.0.0.1:9001"],
                          "labels": {"node": "reviews-v1-0", "service": "reviews", "version": "v1"}}
    command = argv("/usr/bin/prometheus", config, 9090)
    assert "--web.listen-address=127.0.0.1:9090" in command
    assert promql_duration(1.0) == "1s"
    assert promql_duration(2.25) == "2250ms"


def test_instance_labels_are_matched_literally() -> None:
    """RE2 metacharacters escaped, then the string literal's backslashes and quotes: what Prometheus
    parses back is the label itself (checked by compiling the regex Python would see)."""
    import re

    from harness.metrics.prometheus import regex_literal

    for label, near_miss in (("127.0.0.1:9001", "127x0.0.1:9001"), ('odd"host|x\\y:1', "odd")):
        literal = regex_literal(label)
        regex = literal.encode().decode("unicode_escape")  # what the PromQL string literal holds
        assert re.fullmatch(regex, label)
        assert not re.fullmatch(regex, near_miss)  # "." and "|" are literal, not "any" and "or"


def test_an_idle_node_is_in_the_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sidecar scraped fine but exporting none of the counters yet (Envoy's usedonly) is still a node
    of the window, with no counters, as the admin source counts it; a failed scrape (up 0) is not."""
    fake = _FakePrometheus([
        ("up", {"instance": "127.0.0.1:9001"}, [(999.5, 1), (1000.5, 1)]),
        ("up", {"instance": "127.0.0.1:9002"}, [(999.5, 0), (1000.5, 0)]),
    ])
    monkeypatch.setattr("harness.metrics.prometheus.prometheus_client", lambda url: fake)
    source = PrometheusSource("http://127.0.0.1:1", [(NodeInfo("idle-v1-0", "idle", "v1"), "127.0.0.1:9001"),
                                                     (NodeInfo("down-v1-0", "down", "v1"), "127.0.0.1:9002")],
                              [], 1.0, LOCAL, wait_s=0.0)
    timeline = iter([1000.0, 1001.0])
    monkeypatch.setattr("time.time", lambda: next(timeline, 1001.0))
    snap = source.scrape()
    assert snap.envoy == {"idle-v1-0": {}}
    assert snap.opening is not None
    assert snap.opening.envoy == {"idle-v1-0": {}}


def test_a_prometheus_that_does_not_see_the_mesh_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """start() checks every Envoy is scraped: a wrong url or labels is exit 3 naming the missing nodes."""
    from harness._errors import MeshError

    fake = _FakePrometheus([("up", {"instance": "127.0.0.1:9001"}, [(999.5, 1)]),
                            ("up", {"instance": "127.0.0.1:9003"}, [(999.5, 0)])])  # scraped, and failing
    monkeypatch.setattr("harness.metrics.prometheus.prometheus_client", lambda url: fake)
    source = PrometheusSource("http://127.0.0.1:1", [(NodeInfo("a-v1-0", "a", "v1"), "127.0.0.1:9001"),
                                                     (NodeInfo("b-v1-0", "b", "v1"), "127.0.0.1:9002"),
                                                     (NodeInfo("c-v1-0", "c", "v1"), "127.0.0.1:9003")],
                              [], 1.0, LOCAL, wait_s=0.0)
    with pytest.raises(MeshError, match=r"does not scrape 2 of the mesh's 3 Envoys: b-v1-0 \(127.0.0.1:9002\), "
                                        r"c-v1-0 \(127.0.0.1:9003\)"):
        source.start()


def test_an_unreachable_prometheus_is_exit_3_with_its_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """start() on a Prometheus that never answers: MeshError with what the client said, not a traceback."""
    from harness._errors import MeshError

    class Down(_FakePrometheus):
        def custom_query(self, query: str, params: dict[str, str]) -> list[dict[str, Any]]:
            raise ConnectionError("connection refused")

    monkeypatch.setattr("harness.metrics.prometheus.prometheus_client", lambda url: Down([]))
    source = PrometheusSource("http://127.0.0.1:1", [(NodeInfo("a-v1-0", "a", "v1"), "127.0.0.1:9001")],
                              [], 1.0, LOCAL, wait_s=0.0)
    with pytest.raises(MeshError, match="cannot be queried: ConnectionError: connection refused"):
        source.start()
