"""``retries`` with ``model: oracle``: does the edge behave as its retry policy says it must?

The oracle (reference/mesh-semantics.md §5): with a per-attempt failure probability p and n retries,
a request succeeds with probability 1−p^(n+1) and makes (1−p^(n+1))/(1−p) attempts on average.

p is measured on the edge itself, from the callers' sidecars: every attempt either succeeded (2xx) or
failed, so p̂ = failed attempts / attempts. That estimator is the MLE however attempts were stopped,
which is why it is valid under retries. n is the policy actually in force during the window (declared,
then experiment override, then mesh defaults). The verdict compares the observed share of requests
that finally failed with the predicted p^(n+1): both carry intervals at the suite's confidence and the
expectation fails only when they are disjoint. Because successes = (1−p)·attempts holds on both sides,
this is at the same time the check of the attempt count.

Versions: a split callee is one Envoy cluster per version, and Envoy picks the cluster once per request
(weighted_clusters, at routing); its retries stay in that cluster. So p is measured per version and the
prediction is the mixture Σ w_v (1−p_v^(n+1)), w_v the share of requests routed to v. Pooling the
versions instead would be wrong whenever they fail differently (a fault on one version, or versions
with different callees): 40% aborts on a version taking 30% behind 2 retries gives 97.0% success, where
the pooled p predicts 99.1%. Each version's interval takes an equal share of the error budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.assertions import more, stats
from harness.assertions.base import Outcome, VerdictName
from harness.assertions.evidence import WindowEvidence
from harness.model.suite import RetriesExpectation

__all__ = ["evaluate_retries"]


@dataclass(frozen=True)
class _Arm:
    """The requests routed to one callee version (or, unsplit, to the whole callee), with their attempts."""

    version: str
    requests: int
    attempts: int
    failed: int

    @property
    def p(self) -> float:
        return self.failed / self.attempts if self.attempts else 0.0


def _arms(ev: WindowEvidence, caller: str, callee: str, pooled: _Arm) -> list[_Arm]:
    """One arm per version that received requests; the pooled counts when versions cannot be told apart."""
    arms = []
    for version in ev.versions_of(callee):
        c = ev.edge(caller, callee, version)
        if round(c.requests) > 0:
            arms.append(_Arm(version, round(c.requests), round(c.attempts), round(c.failed_attempts)))
    if sum(a.requests for a in arms) != pooled.requests or sum(a.attempts for a in arms) != pooled.attempts:
        return [pooled]
    return arms


def evaluate_retries(exp: RetriesExpectation, ev: WindowEvidence, confidence: float) -> Outcome:
    route = f"{exp.route.from_}->{exp.route.to}"
    policy = ev.policies.get(route)
    if policy is None:
        return Outcome("retries", "inconclusive", None, None, 0, "retry policy known",
                       f"no policy in force is known for {route}; more requests would not settle it: declare "
                       "the edge in the environment", details={"more_requests": None})
    n = policy.retries
    c = ev.edge(exp.route.from_, exp.route.to)
    requests, attempts = round(c.requests), round(c.attempts)
    failed_attempts = round(c.failed_attempts)
    final_failures = max(0, requests - round(c.successes))
    expected = (f"{route}: success 1−p^{n + 1}, attempts (1−p^{n + 1})/(1−p) per request "
                f"({n} retr{'y' if n == 1 else 'ies'} in force)")
    if (why := c.unattempted(route)) is not None:
        return Outcome("retries", "inconclusive", None, None, 0, expected, why, details={"more_requests": None})
    if requests <= 0:
        return Outcome("retries", "inconclusive", None, None, 0, expected,
                       f"no requests on {route} in the {exp.window} window; requests through {route} with some "
                       "failed attempts would settle it", details={"more_requests": None})
    success = 1 - final_failures / requests
    p_hat = failed_attempts / attempts
    arms = _arms(ev, exp.route.from_, exp.route.to, _Arm("", requests, attempts, failed_attempts))
    details: dict[str, Any] = {
        "requests": requests, "attempts": attempts, "retries": int(c.retries), "p": p_hat,
        "retries_in_force": n, "retry_overflow": int(c.retry_overflow), "overflow": int(c.overflow),
    }
    if arms[0].version:
        details["versions"] = {a.version: {"requests": a.requests, "attempts": a.attempts, "p": a.p} for a in arms}
    if failed_attempts == 0:
        hint = _until_a_failure(attempts, requests, confidence, ev.counters_duration)
        return Outcome("retries", "inconclusive", success, None, requests, expected,
                       f"no attempt failed on {route} in the {exp.window} window, so the retry policy "
                       f"was never exercised; inject a fault on the callee ({hint.text})",
                       details=details | hint.details())
    arm_confidence = 1 - (1 - confidence) / len(arms)
    total_requests = sum(a.requests for a in arms)
    predicted_lo = predicted_hi = point = predicted_amp = 0.0
    for arm in arms:
        weight = arm.requests / total_requests
        p_lo, p_hi = stats.wilson_interval(arm.failed, arm.attempts, arm_confidence)
        predicted_lo += weight * (1 - p_hi ** (n + 1))
        predicted_hi += weight * (1 - p_lo ** (n + 1))
        point += weight * (1 - arm.p ** (n + 1))
        predicted_amp += weight * stats.geometric_attempts(arm.p, n)
    predicted = (predicted_lo, predicted_hi)
    observed_iv = stats.wilson_interval(requests - final_failures, requests, confidence)
    amplification = attempts / requests
    p_text = (f"p={p_hat:.3f}" if len(arms) == 1 else
              "p=" + ", ".join(f"{a.version} {a.p:.3f}" for a in arms) + " (per version)")
    details |= {"predicted_success": [*predicted], "amplification": amplification,
                "predicted_amplification": predicted_amp}
    problems: list[str] = []
    verdict: VerdictName = "pass"
    if observed_iv[1] < predicted[0] or observed_iv[0] > predicted[1]:
        verdict = "fail"
        problems.append(
            f"success {success:.4f} (CI {observed_iv[0]:.4f}–{observed_iv[1]:.4f}) is outside the "
            f"{predicted[0]:.4f}–{predicted[1]:.4f} that {n} retries give at {p_text}"
        )
        if c.retry_overflow:
            problems.append(f"{int(c.retry_overflow)} retries were refused by the retry circuit breaker")
    histogram = ev.attempt_histogram(exp.route.to, exp.route.from_)
    over = {k: v for k, v in histogram.items() if k > n + 1}
    if over:
        verdict = "fail"
        problems.append(f"{sum(over.values())} request(s) reached {exp.route.to} at attempt "
                        f"{max(over)} > 1+{n}")
    if exp.max_amplification is not None and amplification > exp.max_amplification:
        verdict = "fail"
        problems.append(f"{amplification:.3f} attempts per request exceeds max_amplification "
                        f"{exp.max_amplification:g}")
    if verdict == "pass":
        message = (f"{route} behaved as {n} retries predict: per-attempt failure {p_text} over "
                   f"{attempts} attempts, success {success:.4f} (predicted {point:.4f}), "
                   f"{amplification:.3f} attempts per request (predicted {predicted_amp:.3f})")
    else:
        message = f"{route} did not behave as its retry policy ({n} retries) predicts: " + "; ".join(problems)
    return Outcome("retries", verdict, success, observed_iv, requests, expected, message, details=details)


def _until_a_failure(attempts: int, requests: int, confidence: float, span: float) -> more.More:
    """With no failed attempt, only a failure can settle the oracle: at the highest per-attempt failure
    rate these attempts allow (the Wilson upper bound), how many more requests would likely show one."""
    p_max = stats.wilson_interval(0, attempts, confidence)[1]
    extra = math.ceil(math.log(1 - more.POWER) / math.log(1 - p_max) * requests / attempts) if p_max < 1 else 1
    return more.More(extra, extra / (requests / span),
                     f"even if attempts fail as often as these {attempts} allow (p<{p_max:.2g}), about {extra} more "
                     f"requests (~{extra / (requests / span):.0f}s) would be needed to see one fail; without a "
                     "fault, none will")
