"""``mtls``: the mesh's mutual TLS kept its promises in a window: nothing dropped, new certificates served,
bad peers refused.

Three claims, each judged on its own evidence, the verdict being the worst of those asked for:

* ``failed_requests: N`` — a census, not a sample: every client request of the window and every call
  between services (as each caller's sidecar answered its app, after retries) is counted, and the claim
  fails as soon as more than N client requests, or more than N calls between services, failed (each
  side on its own: one dropped call that fails its client request is not two failures). A rotation that
  drops one request in four thousand is a rotation that drops requests; the interval of the client
  failure rate is given so that "0 of 40" is not mistaken for "0 of 40,000", and a rotation window
  without a single mTLS handshake is inconclusive (nothing used the new certificates). Without any of
  the three fields, ``failed_requests: 0`` is what is judged.
* ``rotated: true`` — every sidecar of the window's rotation targets serves, at the window's end, a leaf
  whose serial it did not serve before the phase's changes (read from the driver, e.g. Envoy's
  ``/certs``); ``false`` claims that none changed.
* ``rejects: [untrusted, plaintext, wrong-identity]`` — the harness played each bad peer against every
  instance's inbound listener at the window's end, each had to be refused, and each refusal must show
  in that listener's own counter read around the probe (``ssl.fail_verify_error`` for an untrusted
  client certificate, ``ssl.fail_verify_san`` for a wrong identity, ``ssl.connection_error`` for
  plaintext), so a listener that merely hung up does not pass for one that checks certificates; a probe
  that got no answer in time says nothing, and is inconclusive. Under ``mtls: permissive`` plaintext is
  accepted by design, and the verdict says so. With a ``cert-untrusted`` in the window, ``untrusted``
  also judges that workload: no call to it or from it may succeed, and the refusals must be counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.assertions import stats
from harness.assertions.base import Outcome, VerdictName, percent
from harness.assertions.evidence import MtlsEvidence, WindowEvidence, is_success
from harness.metrics.tls import PeerProbe
from harness.metrics.vocabulary import Upstream
from harness.model.suite import MtlsExpectation

__all__ = ["evaluate_mtls"]

_COUNTER = {"untrusted": "ssl.fail_verify_error", "wrong-identity": "ssl.fail_verify_san",
            "plaintext": "ssl.connection_error"}


@dataclass
class _Part:
    verdict: VerdictName
    message: str
    observed: float | None = None
    interval: tuple[float, float] | None = None
    samples: int = 0
    details: dict[str, Any] = field(default_factory=dict)


def evaluate_mtls(exp: MtlsExpectation, ev: WindowEvidence, confidence: float) -> Outcome:
    allowed = exp.failed_requests
    if allowed is None and exp.rotated is None and not exp.rejects:
        allowed = 0
    parts: list[_Part] = []
    if allowed is not None:
        parts.append(_failed(allowed, ev, confidence))
    if exp.rotated is not None:
        parts.append(_rotated(exp.rotated, ev))
    if exp.rejects:
        parts.append(_rejects(list(exp.rejects), ev))
    verdicts = {p.verdict for p in parts}
    verdict: VerdictName = "fail" if "fail" in verdicts else "inconclusive" if "inconclusive" in verdicts else "pass"
    first = parts[0]
    note = _permissive_note(exp, ev)
    message = " ".join(p.message for p in parts) + (f" {note}" if note else "")
    details: dict[str, Any] = {}
    for p in parts:
        details.update(p.details)
    return Outcome("mtls", verdict, first.observed, first.interval, first.samples, _expected(exp, allowed),
                   message, details=details)


def _expected(exp: MtlsExpectation, allowed: int | None) -> str:
    claims = []
    if allowed is not None:
        claims.append(f"at most {allowed} failed request(s)")
    if exp.rotated is not None:
        claims.append("new certificates served by every target" if exp.rotated else "no certificate replaced")
    if exp.rejects:
        claims.append(f"{', '.join(exp.rejects)} peers refused")
    return f"mtls ({exp.window}): " + "; ".join(claims)


# ------------------------------------------------------------------------------------------- failed requests
def _failed(allowed: int, ev: WindowEvidence, confidence: float) -> _Part:
    """Client requests and calls between services, each held to ``allowed`` on its own: one dropped call
    that fails its client request too is one failure on each side, never two against one allowance."""
    n = len(ev.records)
    k = sum(1 for r in ev.records if not is_success(r.status))
    inner = ev.inner_calls()
    ni, ki = int(inner.total), int(inner.xx5)
    handshakes = int(ev.tls_inbound().handshakes)
    details = {"failed_requests": {"failed": max(k, ki), "allowed": allowed, "client": [k, n],
                                   "inner_calls": [ki, ni], "handshakes": handshakes}}
    if n == 0:
        return _Part("inconclusive", f"No client request fell in the {ev.name} window, so nothing says whether "
                                     "requests were dropped.", None, None, 0, details)
    rate = k / n
    lo, hi = stats.wilson_interval(k, n, confidence)
    details["failed_requests"]["rate_interval"] = [lo, hi]
    counted = (f"{k} of {n:,} client requests and {ki} of {ni:,} calls between services failed"
               + (f", over {handshakes:,} mTLS handshakes" if handshakes else ""))
    bound = f"client failure rate {rate:.3%} ({percent(confidence)} interval {lo:.3%} to {hi:.3%})"
    if max(k, ki) > allowed:
        where = " and ".join(w for w, c in (("client requests", k), ("calls between services", ki)) if c > allowed)
        return _Part("fail", f"More than the {allowed} allowed failed among {where} in the {ev.name} window "
                             f"({counted}; {bound}).", rate, (lo, hi), n, details)
    if handshakes == 0 and ev.mtls is not None and ev.mtls.rotated:
        # Pooled connections made before the rotation never handshake again: nothing here used the new
        # certificates, so "nothing failed" says nothing about them.
        return _Part("inconclusive", f"Within the {allowed} allowed in the {ev.name} window ({counted}), but no "
                                     "mTLS handshake was made in it, so no connection used the rotated "
                                     "certificates; a mesh that re-connects after a rotation (or a longer window, "
                                     "as connections recycle) would tell.", rate, (lo, hi), n, details)
    return _Part("pass", f"Within the {allowed} allowed in the {ev.name} window: {counted} ({bound}).",
                 rate, (lo, hi), n, details)


# ------------------------------------------------------------------------------------------- rotated
def _short(serials: tuple[str, ...]) -> str:
    return "/".join(s[:8] for s in serials) or "none"


def _rotated(claim: bool, ev: WindowEvidence) -> _Part:
    m = ev.mtls
    if m is None or m.before is None or m.after is None:
        why = (m.unavailable if m is not None and m.unavailable else
               "the certificates were not read at both ends of this window" if m is not None and not
               ev.name.startswith("step ") else "a step's window has no reading of the certificates at its end")
        return _Part("inconclusive", f"Whether certificates were rotated cannot be told: {why}.")
    targets = set(m.rotated)
    if claim and not targets:
        where = ("this experiment has no cert-rotation" if ev.name == "fault" else
                 f"no cert-rotation is in force at the end of the {ev.name} window (rotations act in the fault "
                 "phase and are undone when it ends): read rotated on window: fault")
        return _Part("fail", f"No certificate was rotated: {where}.", 0.0, None, 0, {"rotated": {}})
    nodes = sorted(n for n, info in ev.nodes.items() if not targets or info.service in targets)
    new: list[str] = []
    kept: list[str] = []
    unknown: list[str] = []
    roots: list[str] = []
    for node in nodes:
        before, after = m.before.get(node), m.after.get(node)
        if before is None or after is None or not after.leaf:
            unknown.append(node)
            continue
        (kept if set(after.leaf) & set(before.leaf) else new).append(node)
        if after.trust != before.trust:
            roots.append(node)
    details = {"rotated": {n: {"before": m.before[n].to_json(), "after": m.after[n].to_json()}
                           for n in nodes if n not in unknown}}
    share = len(new) / len(nodes) if nodes else 0.0
    example = next(iter(new), None)
    shown = (f" (e.g. {example}: {_short(m.before[example].leaf)}… → {_short(m.after[example].leaf)}…)"
             if example else "")
    trust = f"; {len(roots)} of them trust a new root" if roots else ""
    whose = f"of {', '.join(sorted(targets))}" if targets else "of the mesh"
    counted = f"{len(new)} of {len(nodes)} sidecars {whose} serve a new leaf at the end of the window{shown}{trust}"
    if claim:
        if kept:
            return _Part("fail", f"Not every target was rotated: {counted}; still the old leaf: "
                                 f"{', '.join(kept)}.", share, None, len(nodes), details)
        if unknown or not nodes:
            return _Part("inconclusive", f"{counted}; no reading from: {', '.join(unknown) or 'any sidecar'}.",
                         share, None, len(nodes), details)
        return _Part("pass", f"Rotated: {counted}.", share, None, len(nodes), details)
    if new:
        return _Part("fail", f"Certificates were replaced: {counted}.", share, None, len(nodes), details)
    if unknown:
        return _Part("inconclusive", f"{counted}; no reading from: {', '.join(unknown)}.", share, None,
                     len(nodes), details)
    return _Part("pass", f"No certificate was replaced: {counted}.", share, None, len(nodes), details)


# ------------------------------------------------------------------------------------------- rejects
def _instances(probes: list[PeerProbe]) -> str:
    return ", ".join(sorted({p.instance for p in probes}))


def _with(probes: list[PeerProbe], outcome: str) -> list[PeerProbe]:
    return [p for p in probes if p.outcome == outcome]


def _a(kind: str) -> str:
    """"A plaintext", "An untrusted", "A wrong-identity"."""
    return ("An " if kind[0] in "aeiou" else "A ") + kind


def _why_accepted(kind: str, m: MtlsEvidence) -> str:
    if m.mode == "off":
        return "the environment runs mtls: off: its listeners speak no TLS, so every peer is accepted in plaintext"
    if kind == "plaintext" and m.mode == "permissive":
        return "the environment runs mtls: permissive, which accepts plaintext by design (mtls: strict refuses it)"
    return "the mesh let a peer in that it should have refused"


def _rejects(kinds: list[str], ev: WindowEvidence) -> _Part:
    m = ev.mtls
    if m is None or m.probes is None:
        why = m.unavailable if m is not None and m.unavailable else "no probe was made at the end of this window"
        return _Part("inconclusive", f"Whether bad peers are refused cannot be told: {why}.")
    inbound = ev.tls_inbound()
    sentences: list[str] = []
    verdicts: list[VerdictName] = []
    summary: dict[str, Any] = {}
    refused_total = probed_total = 0
    for kind in kinds:
        verdict, sentence, facts = _probed(kind, [p for p in m.probes if p.kind == kind], m, inbound.of(kind))
        verdicts.append(verdict)
        sentences.append(sentence)
        summary[kind] = facts
        refused_total += facts["refused"]
        probed_total += facts["probes"] - facts["unreachable"] - facts["no_answer"]
    if "untrusted" in kinds:
        for service, version in m.untrusted:
            verdict, sentence, facts = _untrusted_workload(service, version, ev)
            verdicts.append(verdict)
            sentences.append(sentence)
            summary.setdefault("untrusted_workloads", {})[f"{service}-{version}" if version else service] = facts
    verdict_all: VerdictName = ("fail" if "fail" in verdicts else "inconclusive" if "inconclusive" in verdicts
                                else "pass")
    share = refused_total / probed_total if probed_total else None
    return _Part(verdict_all, " ".join(sentences), share, None, probed_total, {"rejects": summary})


def _probed(kind: str, probes: list[PeerProbe], m: MtlsEvidence, pooled: float) -> tuple[VerdictName, str,
                                                                                         dict[str, Any]]:
    """One bad peer against every inbound listener: let in anywhere fails; refused everywhere passes when
    each refusal shows in that listener's own counter (read around the probe; else the window's counters)."""
    refused, accepted, no_tls, unreachable, silent = (_with(probes, o) for o in (
        "refused", "accepted", "no-tls", "unreachable", "no-answer"))
    reached = len(refused) + len(accepted) + len(no_tls)
    uncounted = [p for p in refused if p.counted is False]
    unknown = [p for p in refused if p.counted is None]
    facts = {"probes": len(probes), "refused": len(refused), "accepted": len(accepted), "no_tls": len(no_tls),
             "unreachable": len(unreachable), "no_answer": len(silent), "counter": _COUNTER[kind],
             "refusals_counted": sum(1 for p in refused if p.counted),
             "examples": sorted({p.detail for p in probes})[:3]}
    if accepted or no_tls:
        let_in = accepted + no_tls
        return "fail", (f"{_a(kind)} peer was let in by {len(let_in)} of {reached} inbound listeners "
                        f"({_instances(let_in)}: {let_in[0].detail}): {_why_accepted(kind, m)}."), facts
    if reached == 0 or silent:
        who = silent or unreachable
        return "inconclusive", (f"{_a(kind)} peer got no verdict from {len(who)} inbound listener(s) "
                                f"({_instances(who)}: {who[0].detail if who else 'no instance'}), so whether they "
                                "refuse it cannot be told."), facts
    if uncounted:
        return "inconclusive", (f"{_a(kind)} peer was refused by all {reached} inbound listeners, but on "
                                f"{_instances(uncounted)} the listener's {_COUNTER[kind]} did not rise across the "
                                "probe, so the refusal may have another cause than the certificate check."), facts
    if unknown and pooled < len(unknown):
        return "inconclusive", (f"{_a(kind)} peer was refused by all {reached} inbound listeners, but their "
                                f"{_COUNTER[kind]} counters show only {int(pooled)} refusal(s) in the window, so "
                                "the refusal may have another cause than the certificate check."), facts
    counted = ("each refusal counted by the listener itself" if not unknown else
               f"{int(pooled)} counted in the window")
    return "pass", (f"{_a(kind)} peer was refused by all {reached} inbound listeners ({_COUNTER[kind]}: "
                    f"{counted})."), facts


def _untrusted_workload(service: str, version: str | None, ev: WindowEvidence) -> tuple[VerdictName, str,
                                                                                       dict[str, Any]]:
    """A workload given a certificate nobody trusts (``cert-untrusted``) is refused by the mesh itself: no
    call to it and none from it succeeds in the window, and the refusals show as failed verifications."""
    name = f"{service} {version}" if version else service
    versions = [version] if version else ev.versions_of(service)
    to_it = [ev.quantities(n).upstream.get(Upstream(service, v), {}) for n in ev.nodes for v in versions]
    mine = set(ev.nodes_of(service, version))
    from_it = [c for n in mine for c in ev.quantities(n).upstream.values()]
    ok_to, ok_from = (int(sum(c.get("successes", 0.0) for c in cs)) for cs in (to_it, from_it))
    # A request whose handshake failed never became an upstream attempt: count connections tried too.
    tried = int(sum(c.get("attempts", 0.0) + c.get("connect_failures", 0.0) + c.get("tls_errors", 0.0)
                    + c.get("tls_untrusted", 0.0) + c.get("tls_wrong_identity", 0.0) for c in to_it + from_it))
    callers_refused = int(sum(c.get("tls_untrusted", 0.0) for c in to_it))
    callees_refused = int(ev.tls_inbound().untrusted)
    facts = {"successful_calls_to_it": ok_to, "successful_calls_from_it": ok_from,
             "callers_refused_its_certificate": callers_refused, "listeners_refused_a_client_certificate":
             callees_refused}
    if ok_to or ok_from:
        return "fail", (f"The untrusted {name} was not refused: {ok_to} call(s) to it and {ok_from} from it "
                        f"succeeded in the {ev.name} window."), facts
    if tried == 0:
        return "inconclusive", (f"No call to or from the untrusted {name} was made in the {ev.name} window, so "
                                "whether the mesh refuses it cannot be told."), facts
    if callers_refused == 0 and callees_refused == 0:
        return "inconclusive", (f"No call to or from the untrusted {name} succeeded, but no failed certificate "
                                "verification was counted either, so the cause is not shown."), facts
    return "pass", (f"The untrusted {name} was refused by the mesh: no call to or from it succeeded "
                    f"({callers_refused} server certificate(s) refused by its callers, {callees_refused} client "
                    "certificate(s) refused by listeners)."), facts


def _permissive_note(exp: MtlsExpectation, ev: WindowEvidence) -> str:
    """Under ``permissive``, say what the plaintext probe found even when ``rejects`` did not ask."""
    m = ev.mtls
    if m is None or m.mode != "permissive" or m.probes is None or "plaintext" in exp.rejects:
        return ""
    accepted = [p for p in m.probes if p.kind == "plaintext" and p.outcome == "accepted"]
    if not accepted:
        return ""
    return (f"(The plaintext probe was accepted by {len(accepted)} inbound listener(s), as mtls: permissive "
            "allows.)")
