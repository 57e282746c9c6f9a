"""Windowed deltas of scraped counters, including scrapes that missed a node."""

from __future__ import annotations

from harness.metrics.snapshot import Snapshot, delta

STAT = "http.inbound.downstream_rq_completed"


def snap(t: float, **completed: float) -> Snapshot:
    return Snapshot(t, envoy={node: {STAT: value} for node, value in completed.items()},
                    hist={node: {"h": [(1.0, 1.0, int(value))]} for node, value in completed.items()},
                    apps={node: {"requests": int(value)} for node, value in completed.items()})


def test_counts_the_increase_of_each_node() -> None:
    d = delta(snap(0, a=100, b=50), snap(1, a=150, b=60))
    assert d.envoy == {"a": {STAT: 50}, "b": {STAT: 10}}
    assert d.hist["a"]["h"] == [(1.0, 1.0, 50)]
    assert d.apps["b"]["requests"] == 10


def test_a_restarted_node_counts_from_zero() -> None:
    assert delta(snap(0, a=100), snap(1, a=7)).envoy == {"a": {STAT: 7}}


def test_a_node_the_first_scrape_missed_is_left_out_not_counted_whole() -> None:
    """b did not answer the first scrape: its 100,000 earlier requests must not land in this window."""
    d = delta(snap(0, a=100), snap(1, a=150, b=100_000))
    assert d.envoy == {"a": {STAT: 50}}
    assert set(d.hist) == {"a"}
    assert set(d.apps) == {"a"}


def test_a_counter_that_appears_inside_the_window_counts_from_zero() -> None:
    """Envoy creates some stats at their first use: absent before means zero, not unknown."""
    before = snap(0, a=100)
    after = snap(1, a=150)
    after.envoy["a"]["http.inbound.downstream_rq_5xx"] = 3.0
    assert delta(before, after).envoy["a"]["http.inbound.downstream_rq_5xx"] == 3.0
