"""The ``mtls`` expectation on synthetic evidence: each claim (failed requests, rotated, rejects) passes on
what a healthy mesh shows, fails on what a broken one shows, and is inconclusive where the evidence is
missing; every verdict path is here, and each one can fail."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from harness.assertions.base import Outcome
from harness.assertions.evidence import Evidence, MtlsEvidence, WindowEvidence
from harness.assertions.registry import evaluate
from harness.metrics.snapshot import NodeInfo, Snapshot
from harness.metrics.tls import PROBE_KINDS, PeerProbe, ServedCert
from harness.model.suite import Expectation
from harness.traffic.load import Record

__all__: list[str] = []

EXPECTATION = TypeAdapter(Expectation)
NODES = {n.id: n for n in (NodeInfo("gateway", "gateway", "gateway"), NodeInfo("front-v1-0", "front", "v1"),
                           NodeInfo("back-v1-0", "back", "v1"), NodeInfo("back-v2-0", "back", "v2"))}
OLD = {n: ServedCert((f"{i}0aa",), ("r00t",)) for i, n in enumerate(NODES)}
NEW = {n: ServedCert((f"{i}0bb",), ("r00t",)) for i, n in enumerate(NODES)}


def records(n: int, failed: int = 0) -> list[Record]:
    return [Record(100.0 + i * 0.001, 3.0, 503 if i < failed else 200, "front-v1", "front-v1,back-v1")
            for i in range(n)]


def counters(outbound_5xx: int = 0, calls: int = 1000, tls: dict[str, float] | None = None,
             upstream_tls: dict[str, float] | None = None) -> Snapshot:
    """Counter deltas: front's sidecar answered ``calls`` calls to back, ``outbound_5xx`` of them 5xx; the
    back sidecars' inbound TLS counters ``tls`` (split between them)."""
    envoy: dict[str, dict[str, float]] = {
        "front-v1-0": {"http.outbound_back.downstream_rq_completed": calls,
                       "http.outbound_back.downstream_rq_2xx": calls - outbound_5xx,
                       "http.outbound_back.downstream_rq_5xx": outbound_5xx,
                       **{f"cluster.out_back_v1.ssl.{k}": v for k, v in (upstream_tls or {}).items()}},
        "back-v1-0": {f"listener.127.0.0.1_20001.ssl.{k}": v / 2 for k, v in (tls or {}).items()},
        "back-v2-0": {f"listener.127.0.0.1_20002.ssl.{k}": v / 2 for k, v in (tls or {}).items()},
    }
    return Snapshot(110.0, envoy=envoy)


def probes(outcome: dict[str, str] | None = None, instances: tuple[str, ...] = ("front-v1-0", "back-v1-0",
                                                                               "back-v2-0")) -> list[PeerProbe]:
    """Every bad peer against every instance, ``refused`` unless ``outcome`` says otherwise per kind."""
    return [PeerProbe(i.split("-")[0], i, kind, (outcome or {}).get(kind, "refused"),  # type: ignore[arg-type]
                      f"{kind}: {(outcome or {}).get(kind, 'refused')}")
            for i in instances for kind in PROBE_KINDS]


REFUSALS = {"fail_verify_error": 3, "fail_verify_san": 3, "connection_error": 9, "handshake": 4000}
"""What the three probes against three listeners leave in their counters (connection_error counts every
failed handshake), over 4000 good handshakes."""


def judge(expect: dict[str, Any], recs: list[Record] | None = None, snap: Snapshot | None = None,
          mtls: MtlsEvidence | None = None, window: str = "fault") -> Outcome:
    exp = EXPECTATION.validate_python({"kind": "mtls", "window": window, **expect})
    ev = WindowEvidence(window, 100.0, 110.0, records(2000) if recs is None else recs,
                        snap or counters(tls=REFUSALS), NODES, mtls=mtls)
    return evaluate(exp, Evidence({window: ev}, 0.99))


def rotated_evidence(after: dict[str, ServedCert] | None = None, targets: tuple[str, ...] = ("back",),
                     mode: str = "strict") -> MtlsEvidence:
    return MtlsEvidence(mode, targets, OLD, NEW if after is None else after, probes())


# ------------------------------------------------------------------------------------------- failed requests
class TestFailedRequests:
    def test_nothing_failed_passes_with_the_rate_interval(self) -> None:
        """0 of 2000 client requests and 0 of 1000 inner calls: pass, with a rate interval near 0."""
        out = judge({"failed_requests": 0}, mtls=rotated_evidence())
        assert out.verdict == "pass", out.message
        assert out.observed == 0.0
        assert out.samples == 2000
        assert out.interval is not None
        assert out.interval[0] == 0.0
        assert 0 < out.interval[1] < 0.01
        assert "0 of 2,000 client requests and 0 of 1,000 calls between services failed" in out.message
        assert "4,000 mTLS handshakes" in out.message

    def test_one_client_failure_fails(self) -> None:
        """A single dropped client request is more than 0."""
        out = judge({"failed_requests": 0}, recs=records(2000, failed=1))
        assert out.verdict == "fail"
        assert out.details is not None
        assert out.details["failed_requests"]["client"] == [1, 2000]

    def test_a_failed_inner_call_fails_even_when_the_client_saw_none(self) -> None:
        """An optional call that failed inside the mesh is a failed request too."""
        out = judge({"failed_requests": 0}, snap=counters(outbound_5xx=2))
        assert out.verdict == "fail"
        assert "More than the 0 allowed failed among calls between services" in out.message

    def test_a_dropped_call_is_not_counted_twice(self) -> None:
        """One call between services fails and fails its client request too: one failure on each side,
        within failed_requests: 1 (not two against it)."""
        out = judge({"failed_requests": 1}, recs=records(2000, failed=1), snap=counters(outbound_5xx=1))
        assert out.verdict == "pass", out.message
        out = judge({"failed_requests": 1}, recs=records(2000, failed=2), snap=counters(outbound_5xx=1))
        assert out.verdict == "fail", out.message

    def test_a_stated_allowance_is_honoured(self) -> None:
        """failed_requests: 3 passes with 3 failures and fails with 4."""
        assert judge({"failed_requests": 3}, recs=records(2000, failed=3)).verdict == "pass"
        assert judge({"failed_requests": 3}, recs=records(2000, failed=4)).verdict == "fail"

    def test_a_rotation_no_handshake_used_is_inconclusive(self) -> None:
        """Nothing failed, but no connection was made after the rotation: the new certificates were never
        used, so the claim is not shown; a failure is still a failure."""
        quiet = {k: v for k, v in REFUSALS.items() if k != "handshake"}
        out = judge({"failed_requests": 0}, snap=counters(tls=quiet), mtls=rotated_evidence())
        assert out.verdict == "inconclusive", out.message
        assert "no mTLS handshake" in out.message
        out = judge({"failed_requests": 0}, recs=records(2000, failed=1), snap=counters(tls=quiet),
                    mtls=rotated_evidence())
        assert out.verdict == "fail", out.message

    def test_no_request_is_inconclusive(self) -> None:
        out = judge({"failed_requests": 0}, recs=[])
        assert out.verdict == "inconclusive"
        assert "No client request" in out.message

    def test_an_expectation_without_claims_judges_failed_requests_zero(self) -> None:
        """`{kind: mtls}` alone means: nothing failed."""
        assert judge({}).verdict == "pass"
        out = judge({}, recs=records(2000, failed=1))
        assert out.verdict == "fail"
        assert out.expected == "mtls (fault): at most 0 failed request(s)"


# ------------------------------------------------------------------------------------------- rotated
class TestRotated:
    def test_every_target_serving_a_new_leaf_passes(self) -> None:
        out = judge({"rotated": True}, mtls=rotated_evidence())
        assert out.verdict == "pass", out.message
        assert "2 of 2 sidecars of back serve a new leaf" in out.message
        assert out.details is not None
        assert set(out.details["rotated"]) == {"back-v1-0", "back-v2-0"}

    def test_one_target_still_serving_its_old_leaf_fails(self) -> None:
        after = dict(NEW, **{"back-v2-0": OLD["back-v2-0"]})
        out = judge({"rotated": True}, mtls=rotated_evidence(after))
        assert out.verdict == "fail"
        assert "still the old leaf: back-v2-0" in out.message

    def test_a_new_root_is_reported(self) -> None:
        after = {n: ServedCert(c.leaf, ("n3w",)) for n, c in NEW.items()}
        out = judge({"rotated": True}, mtls=rotated_evidence(after, targets=("front", "back", "gateway")))
        assert out.verdict == "pass"
        assert "4 of 4 sidecars" in out.message
        assert "4 of them trust a new root" in out.message

    def test_a_sidecar_without_a_reading_is_inconclusive(self) -> None:
        after = {n: c for n, c in NEW.items() if n != "back-v1-0"}
        out = judge({"rotated": True}, mtls=rotated_evidence(after))
        assert out.verdict == "inconclusive"
        assert "no reading from: back-v1-0" in out.message

    def test_no_certificates_read_is_inconclusive_and_says_why(self) -> None:
        out = judge({"rotated": True}, mtls=MtlsEvidence("strict", ("back",), unavailable="the fake mesh driver "
                                                                                           "cannot show them"))
        assert out.verdict == "inconclusive"
        assert "the fake mesh driver cannot show them" in out.message

    def test_no_rotation_in_the_window_fails(self) -> None:
        """rotated: true on the recovery window: the rotation was undone, nothing is rotated there."""
        out = judge({"rotated": True}, mtls=MtlsEvidence("strict", (), OLD, OLD, None), window="recovery")
        assert out.verdict == "fail"
        assert "read rotated on window: fault" in out.message

    def test_rotated_false(self) -> None:
        """rotated: false passes when every leaf is the one from before, fails when one changed."""
        assert judge({"rotated": False}, mtls=MtlsEvidence("strict", (), OLD, OLD, None)).verdict == "pass"
        changed = dict(OLD, **{"front-v1-0": NEW["front-v1-0"]})
        out = judge({"rotated": False}, mtls=MtlsEvidence("strict", (), OLD, changed, None))
        assert out.verdict == "fail"
        assert "1 of 4 sidecars of the mesh serve a new leaf" in out.message


# ------------------------------------------------------------------------------------------- rejects
class TestRejects:
    def test_refused_by_every_listener_and_counted_passes(self) -> None:
        out = judge({"rejects": ["untrusted", "plaintext", "wrong-identity"]}, mtls=rotated_evidence())
        assert out.verdict == "pass", out.message
        assert "An untrusted peer was refused by all 3 inbound listeners (ssl.fail_verify_error: 3 counted" \
            in out.message
        assert "ssl.fail_verify_san: 3" in out.message
        assert out.samples == 9

    def test_plaintext_under_permissive_fails_and_says_why(self) -> None:
        ev = MtlsEvidence("permissive", (), OLD, OLD, probes({"plaintext": "accepted"}))
        out = judge({"rejects": ["plaintext"]}, mtls=ev)
        assert out.verdict == "fail"
        assert "mtls: permissive, which accepts plaintext by design" in out.message

    def test_permissive_is_said_even_when_plaintext_is_not_claimed(self) -> None:
        """rejects: [untrusted] under permissive passes, and the verdict says plaintext got in."""
        ev = MtlsEvidence("permissive", (), OLD, OLD, probes({"plaintext": "accepted"}))
        out = judge({"rejects": ["untrusted", "wrong-identity"]}, mtls=ev)
        assert out.verdict == "pass", out.message
        assert "plaintext probe was accepted by 3 inbound listener(s), as mtls: permissive allows" in out.message

    def test_an_untrusted_peer_let_in_fails(self) -> None:
        ev = MtlsEvidence("strict", (), OLD, OLD, probes({"untrusted": "accepted"}))
        out = judge({"rejects": ["untrusted"]}, mtls=ev)
        assert out.verdict == "fail"
        assert "let in by 3 of 3" in out.message
        assert "should have refused" in out.message

    def test_no_tls_at_all_fails_under_mtls_off(self) -> None:
        ev = MtlsEvidence("off", (), OLD, OLD, probes({"untrusted": "no-tls", "plaintext": "accepted"}))
        out = judge({"rejects": ["untrusted"]}, mtls=ev, snap=counters())
        assert out.verdict == "fail"
        assert "mtls: off" in out.message

    def test_refused_without_the_counter_is_inconclusive(self) -> None:
        """Refused, but no listener counted a verification failure: maybe the listener was merely closing."""
        out = judge({"rejects": ["untrusted"]}, mtls=rotated_evidence(), snap=counters())
        assert out.verdict == "inconclusive"
        assert "may have another cause" in out.message

    def test_unreachable_listeners_are_inconclusive(self) -> None:
        ev = MtlsEvidence("strict", (), OLD, OLD, probes({"untrusted": "unreachable"}))
        assert judge({"rejects": ["untrusted"]}, mtls=ev).verdict == "inconclusive"

    def test_no_probe_is_inconclusive(self) -> None:
        out = judge({"rejects": ["plaintext"]}, mtls=MtlsEvidence("strict", (), OLD, OLD, None))
        assert out.verdict == "inconclusive"
        assert "no probe was made" in out.message

    def test_each_refusal_counted_by_its_own_listener_passes(self) -> None:
        """The driver read each listener's counter around its probe: that is the evidence, not the window."""
        counted = [PeerProbe(p.service, p.instance, p.kind, p.outcome, p.detail, True) for p in probes()]
        out = judge({"rejects": ["untrusted"]}, mtls=MtlsEvidence("strict", (), OLD, OLD, counted), snap=counters())
        assert out.verdict == "pass", out.message
        assert "each refusal counted by the listener itself" in out.message

    def test_a_refusal_its_listener_did_not_count_is_inconclusive(self) -> None:
        """Refused, but that listener's counter did not rise across the probe (it hung up for another reason),
        even though the window's counters are full of refusals from traffic."""
        mixed = [PeerProbe(p.service, p.instance, p.kind, p.outcome, p.detail, p.instance != "back-v1-0")
                 for p in probes()]
        out = judge({"rejects": ["untrusted"]}, mtls=MtlsEvidence("strict", (), OLD, OLD, mixed))
        assert out.verdict == "inconclusive", out.message
        assert "back-v1-0" in out.message

    def test_a_probe_without_an_answer_is_inconclusive(self) -> None:
        """A frozen or slow listener timed the probe out: it may have let the peer in; nothing is shown."""
        ev = MtlsEvidence("permissive", (), OLD, OLD, probes({"plaintext": "no-answer"}))
        out = judge({"rejects": ["plaintext"]}, mtls=ev)
        assert out.verdict == "inconclusive", out.message
        assert "no verdict" in out.message


def untrusted_back(upstream: dict[str, float], outbound_ok: float = 0.0) -> Snapshot:
    """front calls back v1 (given an untrusted leaf): ``upstream`` are front's cluster stats towards it."""
    snap = counters(tls=REFUSALS)
    envoy = {node: dict(stats) for node, stats in snap.envoy.items()}
    envoy["front-v1-0"].update({f"cluster.out_back_v1.{k}": v for k, v in upstream.items()})
    return Snapshot(snap.t, envoy=envoy)


class TestUntrustedWorkload:
    """With a cert-untrusted in the window, `rejects: [untrusted]` also judges that workload."""

    def evidence(self) -> MtlsEvidence:
        return MtlsEvidence("strict", (), OLD, OLD, probes(), untrusted=(("back", "v1"),))

    def test_refused_by_its_callers_passes(self) -> None:
        # As Envoy counts it: a failed handshake is a failed connection, never an upstream request.
        snap = untrusted_back({"upstream_cx_connect_fail": 120, "ssl.fail_verify_error": 120})
        out = judge({"rejects": ["untrusted"]}, mtls=self.evidence(), snap=snap)
        assert out.verdict == "pass", out.message
        assert "The untrusted back v1 was refused by the mesh" in out.message
        assert "120 server certificate(s) refused by its callers" in out.message

    def test_a_caller_that_still_talks_to_it_fails(self) -> None:
        """Callers that do not verify the server's certificate: calls to the untrusted workload succeed."""
        snap = untrusted_back({"upstream_rq_total": 120, "upstream_rq_2xx": 120})
        out = judge({"rejects": ["untrusted"]}, mtls=self.evidence(), snap=snap)
        assert out.verdict == "fail", out.message
        assert "120 call(s) to it" in out.message

    def test_no_traffic_to_or_from_it_is_inconclusive(self) -> None:
        out = judge({"rejects": ["untrusted"]}, mtls=self.evidence(), snap=untrusted_back({}))
        assert out.verdict == "inconclusive", out.message
        assert "No call to or from the untrusted back v1" in out.message


@pytest.mark.parametrize("claims", [{"failed_requests": 0, "rotated": True},
                                    {"failed_requests": 0, "rejects": ["untrusted"]},
                                    {"rotated": True, "rejects": ["plaintext"]}])
def test_the_verdict_is_the_worst_of_the_claims(claims: dict[str, Any]) -> None:
    """Each claim can sink the whole expectation on its own."""
    assert judge(claims, mtls=rotated_evidence()).verdict == "pass"
    broken = MtlsEvidence("permissive", ("back",), OLD, OLD, probes({"plaintext": "accepted",
                                                                     "untrusted": "accepted"}))
    assert judge(claims, mtls=broken).verdict == "fail"
