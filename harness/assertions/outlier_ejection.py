"""``outlier-ejection``: an instance was (or was not) ejected by its callers, and got no traffic while ejected.

Each calling sidecar runs its own outlier detector over the callee version's hosts (one Envoy cluster per
version), so the evidence is read per calling sidecar, from the snapshots taken inside the window:

* **Ejected**: the sidecar's ejection gauge for the version was above zero at some snapshot, a host of
  it was flagged ejected, or its enforced-ejections counter rose. An ejection already in force when the
  window opened (it usually happens within the phase's settle time) counts.
* **No traffic while ejected**: over every scrape interval at whose both ends a host was ejected (and
  in which no new ejection was enforced, which would mean it had come back in between), that sidecar
  sent the host no request. Per host when the source reads hosts (``/clusters``), else per version when
  all of its hosts were ejected. Envoy's panic mode breaks this promise: with fewer healthy hosts than
  its panic threshold (50% by default; Istio sets 0) it balances over ejected hosts too, which the
  failure message names.
* **``within``**: the requests the sidecar sent the version from the window's start until the first
  snapshot that shows it ejected. While ejected it gets none, so when the second promise holds this
  count is exact, not bounded by the scrape interval.

How much traffic is enough to say "never ejected": an instance that received at least
max(:data:`MIN_REQUESTS`, 4 × consecutive_5xx) requests from the route's callers (or, with ``within``,
more than ``within``) and was never ejected was not ejected; with fewer, the verdict is inconclusive and
says how many more requests it needs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from harness.assertions import more
from harness.assertions.base import Outcome
from harness.assertions.evidence import UpstreamState, WindowEvidence
from harness.metrics.vocabulary import Upstream
from harness.model.suite import OutlierEjectionExpectation

__all__ = ["MIN_REQUESTS", "evaluate_outlier_ejection", "requests_to_judge"]

MIN_REQUESTS = 20
"""The fewest requests an instance must receive before "never ejected" is a verdict."""


def requests_to_judge(consecutive_5xx: int, within: int | None = None) -> int:
    """Requests after which an instance that was not ejected is judged not ejected."""
    return within + 1 if within is not None else max(MIN_REQUESTS, 4 * consecutive_5xx)


def no_run_probability(n: int, p: float, k: int) -> float:
    """P(no run of ``k`` consecutive failures in ``n`` independent requests that each fail with ``p``).

    Why: each calling sidecar's detector ejects a host after ``consecutive_5xx`` failures in a row from
    that host, so whether it *should* have fired depends on runs, not on totals: twenty requests spread
    over ten sidecars, or twenty at a 50% error rate, often hold no run of five at all.
    """
    if k <= 0:
        return 0.0
    if n < k or p <= 0.0:
        return 1.0
    # state[j]: probability that the current trailing run of failures is j (< k) and no run of k yet
    state = [1.0] + [0.0] * (k - 1)
    for _ in range(n):
        nxt = [0.0] * k
        nxt[0] = sum(state) * (1.0 - p)
        for j in range(k - 1):
            nxt[j + 1] = state[j] * p
        state = nxt
    return min(1.0, sum(state))


def detector_missed(callers: list[_Caller], consecutive: int, confidence: float) -> bool:
    """True when, with the window's requests and failures, some calling sidecar's detector would have
    ejected the instance with probability ``confidence`` (at the failure rate's lower confidence bound,
    per host: requests spread evenly over the version's hosts)."""
    from harness.assertions import stats

    for c in callers:
        if c.requests <= 0 or c.failed <= 0:
            continue
        p_low, _ = stats.wilson_interval(int(min(c.failed, c.requests)), int(c.requests), confidence)
        hosts = max(1, c.hosts)
        per_host = int(c.requests // hosts)
        if no_run_probability(per_host, p_low, consecutive) ** hosts < 1 - confidence:
            return True
    return False


def requests_for_detection(callers: list[_Caller], consecutive: int, confidence: float) -> int | None:
    """Requests (per calling sidecar) at which its detector would have fired with ``confidence``, at the
    best sidecar's observed failure rate; None when no request failed (nothing for a detector to see)."""
    rates = [(c.failed / c.requests, max(1, c.hosts)) for c in callers if c.requests > 0 and c.failed > 0]
    if not rates:
        return None
    p, hosts = max(rates)
    if p >= 1.0:
        return consecutive * hosts
    n = consecutive * hosts
    while n < 10**6:
        if no_run_probability(n // hosts, p, consecutive) ** hosts < 1 - confidence:
            return n
        n *= 2
    return None


def _grew(before: float, after: float) -> float:
    """A counter's increase; a sidecar restarted in between counts from zero."""
    return after - before if after >= before else after


@dataclass(frozen=True)
class _Caller:
    """What one calling sidecar did to one callee version in the window."""

    node: str
    version: str
    requests: float
    failed: float
    ejected: bool
    requests_before: float
    while_ejected: float
    ejected_seconds: float
    checked: int
    panic: float
    refused: float
    most_ejected: int
    hosts: int


def _ejected_hosts(state: UpstreamState) -> set[str]:
    return {host for host, c in state.per_host.items() if c.ejected}


def _all_ejected(state: UpstreamState, replicas: int) -> bool:
    hosts = state.hosts if state.hosts else replicas
    return hosts > 0 and state.ejections_active >= hosts


def _caller(node: str, version: str, states: list[UpstreamState], replicas: int) -> _Caller:
    pairs = list(itertools.pairwise(states))
    first = None
    for i, s in enumerate(states):
        again = i > 0 and s.counts.ejections_enforced > states[i - 1].counts.ejections_enforced
        if s.ejections_active > 0 or _ejected_hosts(s) or again:
            first = i
            break
    while_ejected = seconds = 0.0
    checked = 0
    for a, b in pairs:
        if b.counts.ejections_enforced != a.counts.ejections_enforced:
            continue  # ejected again in between: the host may have been back for a while
        both = _ejected_hosts(a) & _ejected_hosts(b)
        if both:
            checked += 1
            seconds += b.t - a.t
            while_ejected += sum(_grew(a.per_host[h].requests, b.per_host[h].requests)
                                 for h in both if h in a.per_host and h in b.per_host)
        elif not a.per_host and _all_ejected(a, replicas) and _all_ejected(b, replicas):
            checked += 1
            seconds += b.t - a.t
            while_ejected += _grew(a.counts.attempts, b.counts.attempts)
    return _Caller(
        node=node, version=version,
        requests=sum(_grew(a.counts.attempts, b.counts.attempts) for a, b in pairs),
        failed=sum(_grew(a.counts.attempts - a.counts.successes, b.counts.attempts - b.counts.successes)
                   for a, b in pairs),
        ejected=first is not None,
        requests_before=sum(_grew(a.counts.attempts, b.counts.attempts) for a, b in pairs[:first or 0]),
        while_ejected=while_ejected, ejected_seconds=seconds, checked=checked,
        panic=sum(_grew(a.counts.panic_routed, b.counts.panic_routed) for a, b in pairs),
        refused=sum(_grew(a.counts.ejections_overflow, b.counts.ejections_overflow) for a, b in pairs),
        most_ejected=max((max(len(_ejected_hosts(s)), int(s.ejections_active)) for s in states), default=0),
        hosts=max((len(s.per_host) or int(s.hosts or 0) for s in states), default=0) or replicas,
    )


def evaluate_outlier_ejection(exp: OutlierEjectionExpectation, ev: WindowEvidence, confidence: float) -> Outcome:
    caller, callee = exp.route.from_, exp.route.to
    route = f"{caller}->{callee}"
    target = exp.instance
    name = f"{target.service}-{target.version}" if target.version else target.service
    expected = f"{name} {'ejected' if exp.ejected else 'not ejected'} by {caller}" + (
        f" within {exp.within} requests" if exp.within else "") + (", no traffic while ejected" if exp.ejected else "")
    if target.service != callee:
        return Outcome("outlier-ejection", "inconclusive", None, None, 0, expected,
                       f"the instance {name} is not a callee of {route}: name a version of {callee}",
                       details={"more_requests": None})
    versions = [target.version] if target.version else ev.versions_of(callee)
    if not target.version and any(Upstream(callee, "") in ev.quantities(n).upstream for n in ev.nodes_of(caller)):
        versions.append("")  # callers reach it through one cluster without version subsets (Istio, no subsets)
    policy = ev.policies.get(route)
    consecutive = policy.outlier.consecutive_5xx if policy is not None and policy.outlier is not None else 5
    need = requests_to_judge(consecutive, exp.within if exp.ejected else None)
    callers = [_caller(node, v, states, len(ev.nodes_of(callee, v or None)))
               for v in versions for node, states in ev.upstream_series(caller, callee, v).items()]
    requests = int(sum(c.requests for c in callers))
    ejected = [c for c in callers if c.ejected]
    details: dict[str, Any] = {
        "requests": requests, "failed": int(sum(c.failed for c in callers)), "ejected": bool(ejected),
        "requests_while_ejected": int(sum(c.while_ejected for c in callers)),
        "ejected_seconds": round(sum(c.ejected_seconds for c in callers), 1),
        "panic_routed": int(sum(c.panic for c in callers)), "ejections_refused": int(sum(c.refused for c in callers)),
        "callers": {f"{c.node}/{c.version}": {"requests": int(c.requests), "ejected": c.ejected,
                                              "requests_before_ejection": int(c.requests_before) if c.ejected else None,
                                              "requests_while_ejected": int(c.while_ejected)} for c in callers},
    }
    observed = 1.0 if ejected else 0.0
    rate = requests / ev.counters_duration
    if not exp.ejected:
        if ejected:
            first = ejected[0]
            return Outcome("outlier-ejection", "fail", observed, None, requests, expected,
                           f"{first.node} ejected {callee}-{first.version} after {int(first.requests_before)} "
                           f"requests ({requests} to {name} in all, {details['failed']} failed)", details=details)
        if requests >= need:
            return Outcome("outlier-ejection", "pass", observed, None, requests, expected,
                           f"{caller} never ejected {name} over {requests} requests ({details['failed']} failed)",
                           details=details)
        return _too_few(expected, requests, need, rate, details, f"{caller} did not eject {name}")
    if not ejected:
        missed = detector_missed(callers, consecutive, confidence)
        if not missed:
            per_sidecar = requests_for_detection(callers, consecutive, confidence)
            need = max(need, requests + 1) if per_sidecar is None else max(need, per_sidecar * max(1, len(callers)))
        return _not_ejected(exp, name, route, requests, need, rate, policy is not None and policy.outlier is None,
                            details, expected, missed)
    return _ejected(exp, name, ejected, requests, rate, details, expected, _scrape_gap(ev))


def _ejected(exp: OutlierEjectionExpectation, name: str, ejected: list[_Caller], requests: int, rate: float,
             details: dict[str, Any], expected: str, gap: float) -> Outcome:
    """``ejected: true`` and some calling sidecar ejected the instance: was it left alone, and in time?"""
    caller, callee = exp.route.from_, exp.route.to
    while_ejected = details["requests_while_ejected"]
    if while_ejected:
        panic = (f"; Envoy was in panic mode for {details['panic_routed']} requests: with fewer healthy hosts than "
                 "its panic threshold (50% unless set; Istio sets 0) it balances over ejected hosts too"
                 if details["panic_routed"] else "")
        return Outcome("outlier-ejection", "fail", 1.0, None, requests, expected,
                       f"{caller} ejected {name}, but {name} received {while_ejected} requests from {caller} while "
                       f"ejected ({details['ejected_seconds']}s observed ejected){panic}", details=details)
    late = [c for c in ejected if exp.within is not None and c.requests_before > exp.within]
    if late:
        return Outcome("outlier-ejection", "fail", 1.0, None, requests, expected,
                       f"{late[0].node} ejected {callee}-{late[0].version} only after {int(late[0].requests_before)} "
                       f"requests, more than within: {exp.within}", details=details)
    if not any(c.checked for c in ejected):
        hint = more.More(max(1, round(rate * 2 * gap)), 2 * gap,
                         f"the window ends as the ejection is first seen, so no scrape interval shows {name} while "
                         f"ejected; about {2 * gap:.0f}s more would")
        return Outcome("outlier-ejection", "inconclusive", 1.0, None, requests, expected,
                       f"{caller} ejected {name}; {hint.text}", details=details | hint.details())
    before = ", ".join(f"{c.node} ejected {c.most_ejected} of {c.hosts} {callee}-{c.version} host"
                       f"{'s' if c.hosts != 1 else ''} after {int(c.requests_before)} requests in the window"
                       for c in ejected)
    return Outcome("outlier-ejection", "pass", 1.0, None, requests, expected,
                   f"{caller} ejected {name} ({before}) and sent no request to an ejected host while it was "
                   f"ejected ({details['ejected_seconds']}s observed)", details=details)


def _not_ejected(exp: OutlierEjectionExpectation, name: str, route: str, requests: int, need: int, rate: float,
                 detection_off: bool, details: dict[str, Any], expected: str, missed: bool) -> Outcome:
    """``ejected: true`` and no sidecar ejected: a failure when the route has no detector at all, or when
    some sidecar's detector saw enough consecutive failures to have fired (see :func:`detector_missed`);
    otherwise too early to tell."""
    caller = exp.route.from_
    if detection_off:
        # No outlier_detection on the route: Envoy has no detector there, so no amount of traffic or
        # failures can ever eject anything. That is certain now, not a matter of more requests.
        return Outcome("outlier-ejection", "fail", 0.0, None, requests, expected,
                       f"{caller} cannot eject {name}: outlier detection is off on {route} ({requests} requests, "
                       f"{details['failed']} failed); set outlier_detection on the call to promise ejection",
                       details=details)
    if requests < need or not missed:
        what = (f"{caller} has not ejected {name} yet" if details["failed"] else
                f"{caller} has not ejected {name}, which has not failed (nothing to detect)")
        return _too_few(expected, requests, need, rate, details, what)
    why = ""
    if details["ejections_refused"]:
        why = f": {details['ejections_refused']} ejections were refused by max_ejection_percent"
    return Outcome("outlier-ejection", "fail", 0.0, None, requests, expected,
                   f"{caller} never ejected {name} over {requests} requests ({details['failed']} failed)"
                   + (f", more than within: {exp.within}" if exp.within is not None else "") + why, details=details)


def _too_few(expected: str, requests: int, need: int, rate: float, details: dict[str, Any], what: str) -> Outcome:
    hint = more.more(need, requests, rate if requests else None)
    return Outcome("outlier-ejection", "inconclusive", 0.0, None, requests, expected,
                   f"{what}, but {requests} requests are too few to judge; {hint.text}",
                   details=details | hint.details())


def _scrape_gap(ev: WindowEvidence) -> float:
    """The typical time between the window's snapshots (1 s when it kept only its two ends)."""
    times = [s.t for s in ev.series]
    gaps = sorted(b - a for a, b in itertools.pairwise(times) if b > a)
    return min(gaps[len(gaps) // 2], 5.0) if len(gaps) > 1 else 1.0
