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
"""

from __future__ import annotations

from typing import Any

from harness.assertions import stats
from harness.assertions.base import Outcome, VerdictName
from harness.assertions.evidence import WindowEvidence
from harness.model.suite import RetriesExpectation

__all__ = ["evaluate_retries"]


def evaluate_retries(exp: RetriesExpectation, ev: WindowEvidence, confidence: float) -> Outcome:
    route = f"{exp.route.from_}->{exp.route.to}"
    policy = ev.policies.get(route)
    if policy is None:
        return Outcome("retries", "inconclusive", None, None, 0, "retry policy known",
                       f"no policy in force is known for {route}")
    n = policy.retries
    c = ev.edge(exp.route.from_, exp.route.to)
    requests, attempts = round(c.requests), round(c.attempts)
    failed_attempts = round(c.failed_attempts)
    final_failures = max(0, requests - round(c.successes))
    expected = (f"{route}: success 1−p^{n + 1}, attempts (1−p^{n + 1})/(1−p) per request "
                f"({n} retr{'y' if n == 1 else 'ies'} in force)")
    if requests <= 0:
        return Outcome("retries", "inconclusive", None, None, 0, expected,
                       f"no requests on {route} in the {exp.window} window")
    success = 1 - final_failures / requests
    p_hat = failed_attempts / attempts
    details: dict[str, Any] = {
        "requests": requests, "attempts": attempts, "retries": int(c.retries), "p": p_hat,
        "retries_in_force": n, "retry_overflow": int(c.retry_overflow), "overflow": int(c.overflow),
    }
    if failed_attempts == 0:
        return Outcome("retries", "inconclusive", success, None, requests, expected,
                       f"no attempt failed on {route} in the {exp.window} window, so the retry policy "
                       "was never exercised; inject a fault on the callee", details=details)
    p_lo, p_hi = stats.wilson_interval(failed_attempts, attempts, confidence)
    predicted = (1 - p_hi ** (n + 1), 1 - p_lo ** (n + 1))
    observed_iv = stats.wilson_interval(requests - final_failures, requests, confidence)
    amplification = attempts / requests
    predicted_amp = stats.geometric_attempts(p_hat, n)
    details |= {"predicted_success": [*predicted], "amplification": amplification,
                "predicted_amplification": predicted_amp}
    problems: list[str] = []
    verdict: VerdictName = "pass"
    if observed_iv[1] < predicted[0] or observed_iv[0] > predicted[1]:
        verdict = "fail"
        problems.append(
            f"success {success:.4f} (CI {observed_iv[0]:.4f}–{observed_iv[1]:.4f}) is outside the "
            f"{predicted[0]:.4f}–{predicted[1]:.4f} that {n} retries give at p={p_hat:.3f}"
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
        message = (f"{route} behaved as {n} retries predict: per-attempt failure p={p_hat:.3f} over "
                   f"{attempts} attempts, success {success:.4f} (predicted {1 - p_hat ** (n + 1):.4f}), "
                   f"{amplification:.3f} attempts per request (predicted {predicted_amp:.3f})")
    else:
        message = f"{route} did not behave as its retry policy ({n} retries) predicts: " + "; ".join(problems)
    return Outcome("retries", verdict, success, observed_iv, requests, expected, message, details=details)
