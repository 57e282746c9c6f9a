"""``abort_if`` conditions on client records and on sidecar counters, without a mesh.

The integration tests show an abort removing a real fault; these pin what each scope reads and that a
condition must hold for its whole ``for`` before it fires.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.assertions.evidence import WindowEvidence
from harness.metrics.snapshot import NodeInfo, Snapshot, delta
from harness.model.suite import AbortCondition
from harness.runner.abort import AbortWatch
from harness.traffic.load import Record

NODES = {n.id: n for n in (NodeInfo("reviews-v1-0", "reviews", "v1"), NodeInfo("reviews-v2-0", "reviews", "v2"),
                           NodeInfo("productpage-v1-0", "productpage", "v1"))}


def cond(**fields: Any) -> AbortCondition:
    return AbortCondition.model_validate(fields)


def sidecar_window(before: Snapshot, after: Snapshot) -> WindowEvidence:
    return WindowEvidence("abort_if", before.t, after.t, [], delta(before, after), NODES)


def inbound(t: float, completed: int, xx5: int, bins: list[tuple[float, float, int]] | None = None) -> Snapshot:
    """Both reviews sidecars with the same cumulative inbound counters at time ``t``."""
    stats = {"http.inbound.downstream_rq_completed": float(completed),
             "http.inbound.downstream_rq_2xx": float(completed - xx5),
             "http.inbound.downstream_rq_5xx": float(xx5)}
    hist = {"http.inbound.downstream_rq_time": bins or []}
    return Snapshot(t, envoy={n: dict(stats) for n in ("reviews-v1-0", "reviews-v2-0")},
                    hist={n: dict(hist) for n in ("reviews-v1-0", "reviews-v2-0")})


def test_client_condition_fires_only_after_holding_for_its_duration() -> None:
    watch = AbortWatch([cond(signal="success_rate", below=0.5, **{"for": "1s"})])
    records = [Record(t / 10, 5.0, 503, "", "") for t in range(100)]  # 10 s of failures
    assert watch.check(records, 3.0) is None  # starts holding
    assert watch.check(records, 3.5) is None
    reason = watch.check(records, 4.1)
    assert reason is not None
    assert "success_rate (client) was 0" in reason


def test_client_condition_resets_when_it_stops_holding() -> None:
    watch = AbortWatch([cond(signal="error_rate", above=0.5, **{"for": "1s"})])
    failing = [Record(t / 10, 5.0, 503, "", "") for t in range(30)]
    healthy = failing + [Record(3 + t / 10, 5.0, 200, "", "") for t in range(30)]
    assert watch.check(failing, 2.0) is None
    assert watch.check(healthy, 5.0) is None  # healthy again: the clock restarts
    assert watch.check(healthy, 5.5) is None


def test_service_scope_reads_the_trailing_second_of_sidecar_counters() -> None:
    watch = AbortWatch([cond(signal="error_rate", scope="service:reviews", above=0.5)], sidecar_window)
    assert watch.needs_sidecars
    assert watch.due(10.0)
    watch.observe(inbound(10.0, 1000, 0))
    assert watch.check([], 10.0) is None  # one scrape: no window yet
    assert not watch.due(10.2)
    watch.observe(inbound(10.5, 1050, 10))
    assert watch.check([], 10.5) is None  # 10 of 50 failed: 0.2
    watch.observe(inbound(11.0, 1100, 50))  # the trailing second: 50 of 100 failed, not above 0.5
    assert watch.check([], 11.0) is None
    watch.observe(inbound(11.5, 1150, 100))  # the trailing second (10.5-11.5): 90 of 100 failed
    reason = watch.check([], 11.5)
    assert reason is not None
    assert "error_rate (service:reviews) was 0.9" in reason


def test_edge_scope_reads_the_callers_outbound_counters() -> None:
    def outbound(t: float, completed: int, xx5: int) -> Snapshot:
        return Snapshot(t, envoy={"productpage-v1-0": {
            "http.outbound_reviews.downstream_rq_completed": float(completed),
            "http.outbound_reviews.downstream_rq_5xx": float(xx5)}})

    watch = AbortWatch([cond(signal="success_rate", scope="edge:productpage->reviews", below=0.9)], sidecar_window)
    watch.observe(outbound(0.0, 0, 0))
    watch.observe(outbound(1.0, 100, 5))
    assert watch.check([], 1.0) is None
    watch.observe(outbound(2.0, 200, 60))
    assert watch.check([], 2.0) is not None


def test_sidecar_latency_reads_the_window_bins() -> None:
    watch = AbortWatch([cond(signal="latency", quantile=0.5, scope="service:reviews", above="50ms")], sidecar_window)
    watch.observe(inbound(0.0, 0, 0, [(1.0, 1.0, 100)]))
    watch.observe(inbound(1.0, 100, 0, [(1.0, 1.0, 200)]))  # 100 more fast requests
    assert watch.check([], 1.0) is None
    watch.observe(inbound(2.0, 200, 0, [(1.0, 1.0, 200), (100.0, 10.0, 100)]))  # then 100 slow ones
    reason = watch.check([], 2.0)
    assert reason is not None
    assert "latency (service:reviews)" in reason


def test_client_only_watch_never_asks_for_scrapes() -> None:
    watch = AbortWatch([cond(signal="success_rate", below=0.5)])
    assert not watch.needs_sidecars
    assert not watch.due(0.0)


def test_old_snapshots_are_dropped() -> None:
    watch = AbortWatch([cond(signal="error_rate", scope="service:reviews", above=0.5)], sidecar_window)
    for i in range(100):
        watch.observe(inbound(i * 0.5, i * 10, 0))
    assert len(watch.snapshots) <= 8


@pytest.mark.parametrize(("fields", "message"), [
    ({"signal": "latency", "above": 250}, "needs a unit"),
    ({"signal": "success_rate", "below": "5ms"}, "are numbers"),
    ({"signal": "error_rate", "above": 5}, "between 0 and 1"),
    ({"signal": "success_rate", "below": 0.5, "quantile": 0.9}, "only applies to signal: latency"),
    ({"signal": "success_rate", "below": 0.5, "scope": "reviews"}, "must be 'client'"),
])
def test_conditions_are_checked_like_slo_bounds(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cond(**fields)


def test_a_scrape_that_missed_an_envoy_cannot_fire_a_condition() -> None:
    """reviews-v2-0 answers no scrape at 10.5 s: neither its whole history nor its absence is read as the
    last second (throughput would read ten times too high, or half)."""
    conditions = [cond(signal="throughput", scope="service:reviews", above=500),
                  cond(signal="throughput", scope="service:reviews", below=150)]
    watch = AbortWatch(conditions, sidecar_window)
    watch.observe(inbound(10.0, 100_000, 0))
    partial = inbound(10.5, 100_050, 0)
    del partial.envoy["reviews-v2-0"], partial.hist["reviews-v2-0"]
    watch.observe(partial)
    watch.observe(inbound(11.0, 100_100, 0))  # 100 per node in the last second: 200 req/s
    assert watch.check([], 11.0) is None
    watch.observe(partial)  # a partial scrape after complete ones is skipped, not compared
    assert watch.check([], 11.5) is None
    value = AbortWatch.sidecar_value(conditions[0], watch._sidecar_evidence())
    assert value == 200.0


def test_a_first_scrape_that_missed_an_envoy_is_dropped_when_it_answers_again() -> None:
    watch = AbortWatch([cond(signal="throughput", scope="service:reviews", below=150)], sidecar_window)
    partial = inbound(10.0, 1000, 0)
    del partial.envoy["reviews-v2-0"], partial.hist["reviews-v2-0"]
    watch.observe(partial)
    watch.observe(inbound(10.5, 1050, 0))
    assert len(watch.snapshots) == 1
    watch.observe(inbound(11.5, 1150, 0))
    assert watch.check([], 11.5) is None  # 200 req/s over both nodes, not 100 over one
