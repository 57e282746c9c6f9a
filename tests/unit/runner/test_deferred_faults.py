"""The runner's part of a certificate rotation, on a fake mesh (no process, no load generator): the rotation
is applied ``at`` into the fault phase (without ``at``, as the window opens), the certificates are read at
the phase's start and its window's end (before the faults are removed), the probes are made there, and
the ``mtls`` verdict reads them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from harness.assertions import evaluate
from harness.mesh.base import GATEWAY, AdmissionControl, Capabilities, CertificateView, Prepared
from harness.mesh.intents import Admission, CertChange, Intent
from harness.metrics.tls import PROBE_KINDS, PeerProbe, ServedCert
from harness.model.loader import load_environment, load_suite
from harness.runner.experiment import RunContext, _Experiment
from harness.runner.journal import Journal
from harness.runner.settings import resolve_experiment
from harness.runner.undo import rollback
from harness.testing import FakeMesh, FakeSource

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[3]


class CertFake(FakeMesh):
    """A fake mesh that rotates certificates in a dict and shows them, and refuses every bad peer."""

    name = "certfake"
    capabilities = Capabilities(mesh="certfake", faults=frozenset({"cert-rotation", "cert-untrusted"}),
                                evidence=frozenset({"client", "sidecar-counters", "certificates", "peer-probes"}))

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.serials = {n.id: "aa" for n in self.topology().nodes}
        self.rotated_at: list[float] = []
        self.probed: list[str] = []

    def prepare(self, intent: Intent) -> Prepared:
        if isinstance(intent, CertChange):
            return Prepared(intent, f"rotate {intent.targets or 'all'}", {"op": "rotate"}, {"op": "unrotate"},
                            ("stage one", "stage two"))
        return super().prepare(intent)

    def apply(self, prepared: Prepared) -> float:
        if prepared.do["op"] == "rotate":
            self.rotated_at.append(time.time())
            time.sleep(0.1)  # a rotation takes time (its stages, confirmed): the window must already be open
            self.serials = dict.fromkeys(self.serials, "bb")
            return 1.0
        return super().apply(prepared)

    def undo(self, undo: dict[str, Any]) -> None:
        if undo["op"] == "unrotate":
            self.serials = dict.fromkeys(self.serials, "aa")
            return
        super().undo(undo)

    def served_certificates(self) -> dict[str, ServedCert]:
        return {n: ServedCert((s,), ("root",)) for n, s in self.serials.items()}

    def probe_peers(self, service: str) -> list[PeerProbe]:
        self.probed.append(service)
        return [PeerProbe(service, f"{service}-v1-0", kind, "refused", "closed") for kind in PROBE_KINDS]


SUITE = """\
apiVersion: harness/v1
kind: Suite
metadata: {{name: deferred}}
spec:
  defaults:
    phases: {{baseline: 300ms, fault: 900ms, recovery: 300ms}}
    settle: 200ms
  experiments:
    - name: rotate
      faults:
        - {{kind: cert-rotation, target: [reviews]{at}}}
      expect:
        - {{kind: mtls, window: fault, rotated: true, rejects: [untrusted]}}
"""


def experiment(tmp_path: Path, at: str) -> tuple[_Experiment, CertFake]:
    env = load_environment(REPO / "environments" / "local.yaml")
    (tmp_path / "suite.yaml").write_text(SUITE.format(at=f", at: {at}" if at else ""))
    suite = load_suite(tmp_path / "suite.yaml").model
    mesh = CertFake.for_environment(env.model, env.path, tmp_path)
    source = FakeSource({n.id: n for n in mesh.topology().nodes})
    ctx = RunContext(mesh, env.model, Journal(tmp_path / "journal.jsonl"), source, "http://127.0.0.1:9", tmp_path)
    return _Experiment(ctx, resolve_experiment(suite, suite.spec.experiments[0])), mesh


@pytest.mark.parametrize(("at", "after_s"), [("600ms", 0.6), ("", 0.2)])
def test_a_rotation_is_applied_at_its_offset_and_judged_before_it_is_undone(tmp_path: Path, at: str,
                                                                          after_s: float) -> None:
    x, mesh = experiment(tmp_path, at)
    assert isinstance(mesh, CertificateView)
    fault_phase = x.r.phases[1]
    start = time.time()
    x.run_phase(fault_phase)
    [applied] = mesh.rotated_at
    assert applied - start == pytest.approx(after_s, abs=0.15)
    assert x.windows["fault"].start <= applied, "the window sees the swap: it opened before the rotation began"
    assert mesh.serials["reviews-v1-0"] == "aa"  # undone when the phase ended
    evidence = x.evidence()
    mtls = evidence.window("fault").mtls
    assert mtls is not None
    assert mtls.rotated == ("reviews",)
    assert mtls.before is not None
    assert mtls.before["reviews-v2-0"].leaf == ("aa",)
    assert mtls.after is not None
    assert mtls.after["reviews-v2-0"].leaf == ("bb",)
    assert sorted(mesh.probed) == ["details", "productpage", "ratings", "reviews"]
    outcome = evaluate(x.exp.expect[0], evidence)
    assert "3 of 3 sidecars of reviews serve a new leaf" in outcome.message
    assert x.result.faults[0].kind == "cert-rotation"
    # Recorded as the harness starts the change: before it is journalled (an fsync, which a busy disk can make
    # take tens of ms: CI once saw 18 ms) and made.
    assert x.result.faults[0].applied_at <= applied - x.t0 <= x.result.faults[0].applied_at + 0.1


def test_a_rotation_not_yet_due_when_the_phase_ends_is_never_applied(tmp_path: Path) -> None:
    events: list[str] = []
    x, mesh = experiment(tmp_path, "600ms")
    x.ctx.on_event = events.append
    now = time.time()
    x.apply_faults(now, now + 0.2)
    assert x.deferred
    assert not mesh.rotated_at
    assert not x._settled("fault", None)  # type: ignore[arg-type]  # never settled before it is applied
    x.remove_faults()
    assert not x.deferred
    assert not mesh.rotated_at
    assert events == ["fault cert-rotation not applied: the fault phase ended first"]


def test_without_an_mtls_expectation_nothing_is_read(tmp_path: Path) -> None:
    x, mesh = experiment(tmp_path, "300ms")
    x.exp = x.exp.model_copy(update={"expect": []})
    x.mtls_wanted = x.probes_wanted = False
    x.run_phase(x.r.phases[1])
    assert mesh.rotated_at
    assert not mesh.probed
    assert x.evidence().window("fault").mtls is None


def test_the_gateway_is_a_target_of_a_rotation_of_all(tmp_path: Path) -> None:
    x, _ = experiment(tmp_path, "")
    fault = x.exp.faults[0].model_copy(update={"target": "all"})
    x.exp = x.exp.model_copy(update={"faults": [fault]})
    assert x._rotated_leaves() == ("productpage", "details", "reviews", "ratings", GATEWAY)


class AdmittingFake(CertFake):
    """A mesh that does not refuse bad peers by itself: its admission is a change the runner must make. Each
    apply checks that its undo is in the journal already."""

    name = "admitfake"
    journal: Journal | None = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.admitted: set[str] = set()
        self.asked: list[frozenset[str]] = []

    def admission(self, rejects: frozenset[str]) -> list[Intent]:
        self.asked.append(rejects)
        return [Admission("ratings", ("reviews",)), Admission("productpage", (), entry=True)]

    def prepare(self, intent: Intent) -> Prepared:
        if isinstance(intent, Admission):
            return Prepared(intent, f"admission of {intent.service}", {"op": "admit", "service": intent.service},
                            {"op": "unadmit", "service": intent.service})
        return super().prepare(intent)

    def apply(self, prepared: Prepared) -> float:
        if prepared.do["op"] == "admit":
            assert self.journal is not None
            assert prepared.undo in [p.undo for p in self.journal.pending()], "applied before it was journalled"
            self.admitted.add(prepared.do["service"])
            return 0.0
        return super().apply(prepared)

    def undo(self, undo: dict[str, Any]) -> None:
        if undo["op"] == "unadmit":
            self.admitted.discard(undo["service"])
            return
        super().undo(undo)


@pytest.mark.parametrize("expect", [
    "{kind: mtls, window: fault, rotated: true, rejects: [untrusted, plaintext]}",
    "{kind: mtls, window: fault, rotated: true}",
], ids=["refusal-test", "no-rejects"])
def test_a_refusal_test_puts_the_declared_admission_in_force_and_the_rollback_removes_it(
        tmp_path: Path, expect: str) -> None:
    """Before the baseline, journalled before it is applied, and only for an experiment with ``rejects``
    (which the driver is told, to decide whether any of them can be played)."""
    env = load_environment(REPO / "environments" / "local.yaml")
    (tmp_path / "suite.yaml").write_text(SUITE.format(at="").replace(
        "{kind: mtls, window: fault, rotated: true, rejects: [untrusted]}", expect))
    suite = load_suite(tmp_path / "suite.yaml").model
    mesh = AdmittingFake.for_environment(env.model, env.path, tmp_path)
    assert isinstance(mesh, AdmissionControl)
    journal = mesh.journal = Journal(tmp_path / "journal.jsonl")
    ctx = RunContext(mesh, env.model, journal, FakeSource({n.id: n for n in mesh.topology().nodes}),
                     "http://127.0.0.1:9", tmp_path)
    events: list[str] = []
    ctx.on_event = events.append
    x = _Experiment(ctx, resolve_experiment(suite, suite.spec.experiments[0]))
    x.apply_policies()
    refusal = "rejects" in expect
    assert mesh.asked == ([frozenset({"untrusted", "plaintext"})] if refusal else [])
    assert mesh.admitted == ({"ratings", "productpage"} if refusal else set())
    assert events == (["admission of ratings", "admission of productpage"] if refusal else [])
    actions, errors = rollback(mesh, journal)
    assert (actions, errors) == (2 if refusal else 0, [])
    assert mesh.admitted == set()
