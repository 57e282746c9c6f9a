"""``outlier-ejection`` verdicts on synthetic snapshot series: every path, each shown failing where the
promise is broken.

A window is built the way the runner builds it: raw scrapes once a second (Envoy's counter and gauge
names, and ``/clusters`` per-host state), the last of which carries the source's history, and the
window's counters as the delta of its two ends, which keeps the scrapes in between as its series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from harness.assertions.evidence import Evidence, WindowEvidence
from harness.assertions.outlier_ejection import requests_to_judge
from harness.assertions.registry import evaluate
from harness.mesh.policy import resolve
from harness.metrics.snapshot import NodeInfo, Snapshot, delta
from harness.model.environment import EdgePolicy
from harness.model.suite import Expectation

NODES = {n.id: n for n in (
    NodeInfo("productpage-v1-0", "productpage", "v1"),
    NodeInfo("reviews-v1-0", "reviews", "v1"),
    NodeInfo("reviews-v3-0", "reviews", "v3"),
    NodeInfo("reviews-v3-1", "reviews", "v3"),
)}
EXP = {"kind": "outlier-ejection", "route": {"from": "productpage", "to": "reviews"},
       "instance": {"service": "reviews", "version": "v3"}, "window": "fault", "ejected": True}
DETECTION = {"outlier_detection": {"consecutive_5xx": 3, "interval": "1s", "base_ejection_time": "30s",
                                   "max_ejection_percent": 50}}


@dataclass
class Host:
    """One reviews-v3 host as productpage's sidecar sees it at one scrape (cumulative requests)."""

    requests: int
    ejected: bool = False


@dataclass
class Scrape:
    """productpage's sidecar's view of the reviews-v3 cluster at one scrape."""

    hosts: dict[str, Host]
    enforced: int = 0
    panic: int = 0
    failed: int | None = None  # default: every request failed
    extra: dict[str, float] = field(default_factory=dict)


def raw(t: float, s: Scrape, per_host: bool = True) -> Snapshot:
    cluster = "cluster.out_reviews_v3"
    total = sum(h.requests for h in s.hosts.values())
    failed = total if s.failed is None else s.failed
    envoy = {"productpage-v1-0": {
        f"{cluster}.upstream_rq_total": float(total),
        f"{cluster}.upstream_rq_2xx": float(total - failed),
        f"{cluster}.upstream_rq_5xx": float(failed),
        f"{cluster}.outlier_detection.ejections_active": float(sum(h.ejected for h in s.hosts.values())),
        f"{cluster}.outlier_detection.ejections_enforced_total": float(s.enforced),
        f"{cluster}.lb_healthy_panic": float(s.panic),
        f"{cluster}.membership_total": float(len(s.hosts)),
        **s.extra,
    }}
    hosts = {"productpage-v1-0": {"out_reviews_v3": {
        addr: {"rq_total": float(h.requests), "rq_error": float(h.requests), "ejected": 1.0 if h.ejected else 0.0}
        for addr, h in s.hosts.items()}}} if per_host else {}
    return Snapshot(t, envoy=envoy, hosts=hosts)


def evidence(scrapes: list[Scrape], per_host: bool = True, detection: bool = True) -> WindowEvidence:
    series = [raw(100.0 + i, s, per_host) for i, s in enumerate(scrapes)]
    for snap in series:
        snap.history = series
    pol = {"productpage->reviews": resolve(EdgePolicy.model_validate(DETECTION) if detection else None)}
    return WindowEvidence("fault", 100.0, 100.0 + len(series) - 1, [], delta(series[0], series[-1]),
                          dict(NODES), pol)


def judge(ev: WindowEvidence, **fields: Any) -> Any:
    exp: Expectation = TypeAdapter(Expectation).validate_python(EXP | fields)
    return evaluate(exp, Evidence({"fault": ev}, 0.99))


def one_host(*counts: tuple[int, bool]) -> list[Scrape]:
    """A single-host version: (cumulative requests, ejected?) per scrape; each new ejection after the
    first scrape is counted as enforced (one in force at the first scrape happened before the window)."""
    out = []
    enforced = 0
    for i, (n, ej) in enumerate(counts):
        if ej and i > 0 and not counts[i - 1][1]:
            enforced += 1
        out.append(Scrape({"127.0.0.1:1": Host(n, ej)}, enforced=enforced))
    return out


class TestEjected:
    def test_requests_needed_to_judge(self) -> None:
        """4 × consecutive_5xx, at least 20; with within, one more than within."""
        assert (requests_to_judge(3), requests_to_judge(10), requests_to_judge(3, within=50)) == (20, 40, 51)

    def test_ejected_and_then_left_alone_passes(self) -> None:
        """Ejected after 30 requests, then no request for three scrapes: pass, ejected time reported."""
        out = judge(evidence(one_host((0, False), (30, True), (30, True), (30, True), (30, True))))
        assert out.verdict == "pass", out.message
        assert out.observed == 1.0
        assert out.samples == 30
        assert out.details["requests_while_ejected"] == 0
        assert out.details["ejected_seconds"] == 3.0

    def test_an_ejection_already_in_force_at_the_window_start_counts(self) -> None:
        """Ejected during the settle time, before the window opened: ejected after 0 requests in the window."""
        out = judge(evidence(one_host((5, True), (5, True), (5, True))), within=3)
        assert out.verdict == "pass", out.message
        assert out.details["callers"]["productpage-v1-0/v3"]["requests_before_ejection"] == 0

    def test_traffic_while_ejected_fails_and_names_panic_mode(self) -> None:
        """A single ejected host that keeps getting requests (Envoy's panic mode): fail, saying why."""
        scrapes = one_host((0, False), (30, True), (130, True), (230, True))
        for s in scrapes[2:]:
            s.panic = 200
        out = judge(evidence(scrapes))
        assert out.verdict == "fail", out.message
        assert out.details["requests_while_ejected"] == 200
        assert "panic mode" in out.message

    def test_one_of_two_hosts_ejected_the_other_keeps_traffic(self) -> None:
        """Per host: the ejected host gets nothing while the other takes the traffic: pass."""
        scrapes = [Scrape({"a": Host(0), "b": Host(0)}),
                   Scrape({"a": Host(10, True), "b": Host(40)}, enforced=1),
                   Scrape({"a": Host(10, True), "b": Host(140)}, enforced=1),
                   Scrape({"a": Host(10, True), "b": Host(240)}, enforced=1)]
        out = judge(evidence(scrapes))
        assert out.verdict == "pass", out.message
        assert "1 of 2" in out.message

    def test_the_ejected_one_of_two_hosts_still_called_fails(self) -> None:
        """Per host: the ejected host's own request count grew while it was ejected: fail."""
        scrapes = [Scrape({"a": Host(0), "b": Host(0)}),
                   Scrape({"a": Host(10, True), "b": Host(40)}, enforced=1),
                   Scrape({"a": Host(15, True), "b": Host(140)}, enforced=1)]
        out = judge(evidence(scrapes))
        assert out.verdict == "fail", out.message
        assert out.details["requests_while_ejected"] == 5

    def test_without_host_counts_the_version_is_checked_when_all_its_hosts_are_out(self) -> None:
        """No /clusters data: the ejection gauge at the host count and a still counter pass; a growing one
        fails."""
        still = one_host((0, False), (30, True), (30, True), (30, True))
        assert judge(evidence(still, per_host=False)).verdict == "pass"
        moving = one_host((0, False), (30, True), (60, True), (90, True))
        assert judge(evidence(moving, per_host=False)).verdict == "fail"

    def test_a_new_ejection_between_two_scrapes_is_not_read_as_traffic_while_ejected(self) -> None:
        """Ejected at both scrapes but ejected *again* in between: the host was back for a while, so the
        requests in that interval are not charged to it."""
        scrapes = one_host((0, False), (30, True), (30, True))
        scrapes.append(Scrape({"127.0.0.1:1": Host(35, True)}, enforced=2))
        out = judge(evidence(scrapes))
        assert out.verdict == "pass", out.message

    def test_ejected_too_late_for_within_fails(self) -> None:
        """Ejected only after 120 requests where within: 50 was promised."""
        out = judge(evidence(one_host((0, False), (60, False), (120, True), (120, True))), within=50)
        assert out.verdict == "fail", out.message
        assert "120 requests" in out.message

    def test_ejected_within_passes(self) -> None:
        """Ejected after 30 requests, within 50."""
        out = judge(evidence(one_host((0, False), (30, True), (30, True))), within=50)
        assert out.verdict == "pass", out.message

    def test_never_ejected_with_detection_off_fails(self) -> None:
        """100 failing requests and no ejection, detection off on the route: fail, saying so."""
        out = judge(evidence(one_host((0, False), (50, False), (100, False)), detection=False))
        assert out.verdict == "fail", out.message
        assert "outlier detection is off" in out.message

    def test_detection_off_fails_even_when_nothing_failed(self) -> None:
        """No detector on the route: ejection is impossible, so the claim fails at once, not after more data."""
        scrapes = one_host((0, False), (5, False), (10, False))
        for s in scrapes:
            s.failed = 0
        out = judge(evidence(scrapes, detection=False))
        assert out.verdict == "fail", out.message
        assert "outlier detection is off" in out.message

    def test_ejections_refused_by_max_ejection_percent_are_named(self) -> None:
        """Never ejected because max_ejection_percent refused it: the message says so."""
        scrapes = one_host((0, False), (50, False), (100, False))
        scrapes[-1].extra = {"cluster.out_reviews_v3.outlier_detection.ejections_overflow": 4.0}
        out = judge(evidence(scrapes))
        assert out.verdict == "fail", out.message
        assert "max_ejection_percent" in out.message

    def test_no_run_of_failures_is_not_a_missed_ejection(self) -> None:
        """40 requests at 50% failures, not ejected: a run of 3 in a row is not certain, so not a fail."""
        scrapes = one_host((0, False), (20, False), (40, False))
        for s, failed in zip(scrapes, (0, 10, 20), strict=True):
            s.failed = failed
        out = judge(evidence(scrapes))
        assert out.verdict == "inconclusive", out.message
        assert out.details["more_requests"] > 0

    def test_healthy_instance_not_ejected_is_not_a_missed_ejection(self) -> None:
        """An instance that never failed was not ejected: nothing to detect, inconclusive, never fail."""
        scrapes = one_host((0, False), (50, False), (100, False))
        for s in scrapes:
            s.failed = 0
        out = judge(evidence(scrapes))
        assert out.verdict == "inconclusive", out.message
        assert "nothing to detect" in out.message

    def test_no_run_probability_matches_brute_force(self) -> None:
        """The run probability equals exhaustive enumeration for small n."""
        import itertools

        from harness.assertions.outlier_ejection import no_run_probability

        for n, p, k in ((6, 0.5, 3), (8, 0.3, 2), (5, 0.9, 5), (7, 0.6, 4)):
            exact = sum(p ** sum(seq) * (1 - p) ** (n - sum(seq))
                        for seq in itertools.product((0, 1), repeat=n)
                        if "1" * k not in "".join(map(str, seq)))
            assert abs(no_run_probability(n, p, k) - exact) < 1e-12

    def test_too_few_requests_is_inconclusive(self) -> None:
        """10 requests without ejection (20 needed at consecutive_5xx 3): 10 more, at the window's rate."""
        out = judge(evidence(one_host((0, False), (5, False), (10, False))))
        assert out.verdict == "inconclusive", out.message
        assert out.details["more_requests"] == 10
        assert out.details["more_seconds"] == 2.0

    def test_seen_ejected_only_at_the_last_scrape_is_inconclusive(self) -> None:
        """The ejection shows only at the window's last scrape: no interval shows it while ejected yet."""
        out = judge(evidence(one_host((0, False), (30, False), (60, True))))
        assert out.verdict == "inconclusive", out.message
        assert out.details["more_seconds"] == 2.0

    def test_an_instance_of_another_service_is_inconclusive(self) -> None:
        """An instance that the route does not call cannot be judged on it."""
        out = judge(evidence(one_host((0, False), (30, True))), instance={"service": "ratings", "version": "v1"})
        assert out.verdict == "inconclusive", out.message
        assert out.details["more_requests"] is None


class TestNotEjected:
    def test_healthy_instance_never_ejected_passes(self) -> None:
        """ejected: false with 300 successful requests and no ejection: pass."""
        scrapes = one_host((0, False), (150, False), (300, False))
        for s in scrapes:
            s.failed = 0
        out = judge(evidence(scrapes), ejected=False)
        assert out.verdict == "pass", out.message
        assert out.observed == 0.0

    def test_an_ejection_fails_not_ejected(self) -> None:
        """ejected: false, but the sidecar ejected it after 30 requests: fail."""
        out = judge(evidence(one_host((0, False), (30, True), (30, True))), ejected=False)
        assert out.verdict == "fail", out.message
        assert "after 30 requests" in out.message

    def test_too_few_requests_is_inconclusive(self) -> None:
        """ejected: false with 8 requests: 12 more are needed."""
        out = judge(evidence(one_host((0, False), (8, False))), ejected=False)
        assert out.verdict == "inconclusive", out.message
        assert out.details["more_requests"] == 12


class TestACalleeWithoutSubsets:
    """An Istio host without DestinationRule subsets: its callers' cluster stats name no version (the cluster
    ``outbound|9080||reviews…``), so the cluster's metric source counts them under version ``""``. A verdict
    on the whole service reads them, and fails where no host was ejected."""

    @staticmethod
    def window(ejected_at: int | None) -> WindowEvidence:
        from harness.metrics.istio_telemetry import IstioTelemetryNaming

        naming = IstioTelemetryNaming({"reviews"})
        series = []
        for i in range(5):
            ejected = ejected_at is not None and i >= ejected_at
            n = 15 * (min(i, ejected_at) if ejected_at is not None else i)  # every request fails; none once ejected
            active = 3.0 if ejected else 0.0  # every host (no per-host stats: only all ejected shows no traffic)
            stats = {"envoy/reviews//attempts": float(n), "envoy/reviews//final_5xx": float(n),
                     "envoy/reviews//ejections_active": active, "envoy/reviews//ejections_enforced": active}
            series.append(Snapshot(100.0 + i, envoy={"productpage-v1-0": stats}, naming=naming))
        for snap in series:
            snap.history = series
        pol = {"productpage->reviews": resolve(EdgePolicy.model_validate(DETECTION))}
        return WindowEvidence("fault", 100.0, 104.0, [], delta(series[0], series[-1]), dict(NODES), pol)

    def test_an_ejection_is_read_and_passes(self) -> None:
        out = judge(self.window(ejected_at=2), instance={"service": "reviews"})
        assert out.verdict == "pass", out.message
        assert "productpage-v1-0/" in out.details["callers"]

    def test_no_ejection_after_enough_failures_fails(self) -> None:
        out = judge(self.window(ejected_at=None), instance={"service": "reviews"})
        assert out.verdict == "fail", out.message
