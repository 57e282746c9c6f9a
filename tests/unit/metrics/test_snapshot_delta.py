"""Windowed deltas of scraped counters, including scrapes that missed a node."""

from __future__ import annotations

from typing import Any

from harness.metrics.snapshot import Snapshot, delta, window_max_inflight

STAT = "http.inbound.downstream_rq_completed"


def snap(t: float, **completed: float) -> Snapshot:
    return Snapshot(t, envoy={node: {STAT: value} for node, value in completed.items()},
                    hist={node: {"h": [(1.0, 1.0, int(value))]} for node, value in completed.items()},
                    apps={node: {"requests": int(value)} for node, value in completed.items()})


def test_counts_the_increase_of_each_node() -> None:
    """Counters, histogram bins and app counters each read the increase between the two scrapes."""
    d = delta(snap(0, a=100, b=50), snap(1, a=150, b=60))
    assert d.envoy == {"a": {STAT: 50}, "b": {STAT: 10}}
    assert d.hist["a"]["h"] == [(1.0, 1.0, 50)]
    assert d.apps["b"]["requests"] == 10


def test_a_restarted_node_counts_from_zero() -> None:
    """A counter that went down belongs to a restarted Envoy: its new value is the window's count."""
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


def test_the_delta_keeps_the_snapshots_taken_inside_the_window() -> None:
    """A window's series: its two ends and every scrape of the source's history between them, in order."""
    history = [snap(float(t), a=10 * t) for t in range(6)]
    for s in history:
        s.history = history
    d = delta(history[1], history[4])
    assert [s.t for s in d.series] == [1.0, 2.0, 3.0, 4.0]
    assert [s.t for s in delta(snap(0, a=1), snap(1, a=2)).series] == [0.0, 1.0], "no history: the two ends"


def test_per_host_counts_subtract_and_keep_the_current_ejection_flag() -> None:
    """Host request counts are counters; whether a host is ejected is the state at the window's end."""
    before = Snapshot(0, hosts={"a": {"out_x_v1": {"h": {"rq_total": 10.0, "rq_error": 2.0, "ejected": 1.0}}}})
    after = Snapshot(1, hosts={"a": {"out_x_v1": {"h": {"rq_total": 15.0, "rq_error": 2.0, "ejected": 0.0}}}})
    assert delta(before, after).hosts == {"a": {"out_x_v1": {"h": {"rq_total": 5.0, "rq_error": 0.0,
                                                                   "ejected": 0.0}}}}


def test_app_call_records_subtract_per_callee() -> None:
    """Outcomes, statuses and latency bins of the calls an app made, per callee, over the window only."""
    def app(ok: int, timeouts: int) -> dict[str, Any]:
        return {"requests": 0, "calls": {"ratings": {
            "status": {"200": ok, "504": timeouts}, "outcomes": {"ok": ok, "timeout": timeouts},
            "latency": {"ok": [[2.0, 1.0, ok]], "timeout": [[100.0, 1.0, timeouts]]}}}}

    d = delta(Snapshot(0, apps={"r": app(10, 3)}), Snapshot(1, apps={"r": app(25, 3)}))
    calls = d.apps["r"]["calls"]["ratings"]
    assert calls["status"] == {"200": 15}
    assert calls["outcomes"] == {"ok": 15}
    assert calls["latency"] == {"ok": [(2.0, 1.0, 15)], "timeout": []}


class TestWindowMaxInflight:
    """The most requests an app had in flight inside a window, from its quarter-second peak log."""

    def test_peaks_inside_the_window_count_and_earlier_ones_do_not(self) -> None:
        """A burst of 40 before the window is not the window's; its own peak of 7 is."""
        app = {"inflight_peaks": [[99.0, 40], [101.0, 7], [105.0, 3]], "inflight_peak_s": 0.25, "max_inflight": 40}
        assert window_max_inflight({"inflight": 2}, app, 100.0, 110.0) == 7

    def test_the_level_at_the_window_start_counts(self) -> None:
        """Requests still in flight when the window opened count even if none arrived inside it."""
        app = {"inflight_peaks": [[90.0, 12]], "inflight_peak_s": 0.25}
        assert window_max_inflight({"inflight": 12}, app, 100.0, 110.0) == 12

    def test_a_bucket_straddling_the_start_counts_whole(self) -> None:
        """The quarter second holding the window's start is counted: an overestimate, never an under."""
        app = {"inflight_peaks": [[99.9, 9]], "inflight_peak_s": 0.25}
        assert window_max_inflight({}, app, 100.0, 110.0) == 9

    def test_long_windows_read_the_log_of_every_scrape(self) -> None:
        """The log keeps a minute; scrapes inside a longer window carry its earlier peaks."""
        middle = Snapshot(130.0, apps={"r": {"inflight_peaks": [[120.0, 30]]}})
        app = {"inflight_peaks": [[170.0, 4]], "inflight_peak_s": 0.25}
        assert window_max_inflight({}, app, 100.0, 180.0, [middle], "r") == 30

    def test_an_app_without_a_log_gives_its_maximum(self) -> None:
        """An older demo service: its since-start maximum, the best that is known."""
        assert window_max_inflight({}, {"max_inflight": 5}, 0.0, 1.0) == 5

    def test_the_delta_carries_the_window_maximum(self) -> None:
        """delta() puts the window's maximum, not the since-start one, in max_inflight."""
        before = Snapshot(100.0, apps={"r": {"requests": 0, "inflight": 1}})
        after = Snapshot(110.0, apps={"r": {"requests": 50, "max_inflight": 80, "inflight_peak_s": 0.25,
                                            "inflight_peaks": [[50.0, 80], [104.0, 6]]}})
        assert delta(before, after).apps["r"]["max_inflight"] == 6
