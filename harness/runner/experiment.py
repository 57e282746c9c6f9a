"""One experiment, start to finish: policy, load, baseline → fault → recovery, verdicts, rollback.

Every mesh change is journalled before it is made and undone in ``finally``, newest first, whatever
happens in between (a failed expectation, an exception, Ctrl-C). Windows skip the first ``settle`` of
each phase so they show the state the phase set up, not the transition into it.

A ``cert-rotation`` is deferred: applied ``at`` into the fault phase (without ``at``, as its window opens),
from the loop that waits through the phase, so that the window sees the swap itself. An experiment with
an ``mtls`` expectation also reads the certificates every sidecar serves at each phase's start and its
window's end, and, for ``rejects``, has the driver probe every instance as a bad peer just before the
window's last scrape (so the listeners' handshake counters in the window include the probes).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness._errors import HarnessError
from harness.assertions import Evidence, Outcome, WindowEvidence, evaluate
from harness.assertions.evidence import MtlsEvidence
from harness.assertions.registry import window_of
from harness.faults import intents_for, shift_steps
from harness.mesh.base import GATEWAY, AdmissionControl, CertificateView, MeshDriver, MetricSource
from harness.mesh.intents import Intent, PolicyOverride, ProcessSignal
from harness.mesh.policy import ResolvedPolicy
from harness.metrics.snapshot import Snapshot, delta
from harness.metrics.tls import PeerProbe, ServedCert
from harness.model.environment import Environment
from harness.model.suite import LOAD_MARGIN_S, CertRotation, CertUntrusted, Fault, MtlsExpectation, TrafficShift
from harness.runner.abort import AbortWatch
from harness.runner.journal import Journal
from harness.runner.progress import Progress, recent, timeline
from harness.runner.results import ExperimentCrashed, ExperimentResult, FaultRecord, PhaseRecord, StepRecord
from harness.runner.settings import PhasePlan, Resolved
from harness.runner.undo import apply_undo, rollback, signals_deferred
from harness.traffic.load import REMOTE_WAIT_S, LoadGenerator, LoadSpec, Record, prewarm

__all__ = ["RunContext", "run_experiment"]

TICK_S = 0.2
RECORD_LAG_S = 0.5
"""Client records reach us about 0.1-0.2 s after their request started; a window judged while the load
runs ends this far in the past so that it holds every record it will ever hold."""


@dataclass
class RunContext:
    """What every step of a run needs; one per suite run."""

    mesh: MeshDriver
    env: Environment
    journal: Journal
    source: MetricSource
    gateway_url: str
    workdir: Path
    on_event: Callable[[str], None] = field(default=lambda message: None)
    on_progress: Callable[[Progress], None] | None = None
    """Called about twice a second while a phase runs (see :mod:`harness.runner.progress`)."""


PROGRESS_EVERY_S = 0.5
PREWARM_SETTLE_S = 0.5
"""The shortest recovery settle time in which the next experiment's Locust is started (see :func:`prewarm`)."""


@dataclass
class _Window:
    start: float
    end: float
    before: Snapshot
    after: Snapshot


class _Experiment:
    def __init__(self, ctx: RunContext, resolved: Resolved) -> None:
        self.ctx = ctx
        self.r = resolved
        self.exp = resolved.experiment
        self.result = ExperimentResult(self.exp.name, description=self.exp.description)
        self.records: list[Record] = []
        self.phase_label = ""
        self.phase_end = 0.0
        self.progress_at = 0.0
        self.windows: dict[str, _Window] = {}
        self.fault_seqs: list[int] = []
        self.t0 = time.time()
        self.load: LoadGenerator | None = None
        self.aborted: str | None = None
        self.deferred: list[tuple[float, Fault]] = []
        """Faults applied later in the fault phase (``cert-rotation`` ``at``): (when, fault), soonest first."""
        mtls = [e for e in self.exp.expect if isinstance(e, MtlsExpectation)]
        self.mtls_wanted = bool(mtls)
        self.probes_wanted = any(e.rejects for e in mtls)
        self.certs_before: dict[str, dict[str, ServedCert] | None] = {}
        self.certs_after: dict[str, dict[str, ServedCert] | None] = {}
        self.probes: dict[str, list[PeerProbe] | None] = {}
        self.mtls_problem: str | None = None

    # -------------------------------------------------------------------------------- helpers
    def _pull(self) -> None:
        if self.load is not None:
            self.records.extend(self.load.read_new())

    def _rel(self, t: float) -> float:
        return t - self.t0

    def _policies(self) -> dict[str, ResolvedPolicy]:
        mesh, spec = self.ctx.mesh, self.ctx.env.spec
        out = {f"{a}->{b}": mesh.policy(a, b) for a, b in spec.edges()}
        out[f"{GATEWAY}->{spec.gateway.service}"] = mesh.policy(GATEWAY, spec.gateway.service)
        return out

    def _change(self, intent: Intent) -> tuple[int, str, float]:
        """Journal, then make, one change: (journal seq, description, activation ms)."""
        prepared = self.ctx.mesh.prepare(intent)
        seq = self.ctx.journal.record(prepared.description, prepared.undo)
        return seq, prepared.description, self.ctx.mesh.apply(prepared)

    def _evidence_window(self, name: str, w: _Window, policies: dict[str, ResolvedPolicy]) -> WindowEvidence:
        recs = [r for r in self.records if w.start <= r.t < w.end]
        counters = delta(w.before, w.after)
        span = counters.span if counters.span is not None else w.after.t - w.before.t
        return WindowEvidence(name, w.start, w.end, recs, counters, self.ctx.source.node_info,
                              policies, counter_span=span, mtls=self._mtls_evidence(name),
                              promql=getattr(self.ctx.source, "query", None))

    # -------------------------------------------------------------------------------- mtls evidence
    def _mtls_evidence(self, window: str) -> MtlsEvidence | None:
        """Certificates before the phase's changes and at the window's end, and the probes made there.
        ``all`` spans baseline start to recovery end; a step of a shift has no probes or end reading."""
        if not self.mtls_wanted:
            return None
        rotating = window == "fault" or window.startswith("step ")
        if window == "all":
            before, after, probes = (self.certs_before.get("baseline"), self.certs_after.get("recovery"),
                                     self.probes.get("recovery"))
        elif window.startswith("step "):
            before, after, probes = self.certs_before.get("fault"), None, None
        else:
            before, after, probes = (self.certs_before.get(window), self.certs_after.get(window),
                                     self.probes.get(window))
        untrusted = tuple((f.target.service, f.target.version) for f in self.exp.faults
                          if isinstance(f, CertUntrusted)) if rotating else ()
        return MtlsEvidence(self.ctx.env.spec.mtls, self._rotated_leaves() if rotating else (), before, after,
                            probes, self.mtls_problem, untrusted)

    def _rotated_leaves(self) -> tuple[str, ...]:
        """The leaves this experiment's rotations replace: their services (``all``: every one, and the
        gateway's)."""
        names: list[str] = []
        for fault in self.exp.faults:
            if isinstance(fault, CertRotation):
                names += fault.services or [*(s.name for s in self.ctx.env.spec.services), GATEWAY]
        return tuple(dict.fromkeys(names))

    def _certificates(self) -> dict[str, ServedCert] | None:
        mesh = self.ctx.mesh
        if "certificates" not in mesh.capabilities.evidence or not isinstance(mesh, CertificateView):
            self.mtls_problem = f"the {mesh.name} mesh driver cannot show the certificates its sidecars serve"
            return None
        try:
            return mesh.served_certificates()
        except HarnessError as exc:
            self.mtls_problem = f"the certificates could not be read: {exc}"
            return None

    def _probe_peers(self) -> list[PeerProbe] | None:
        mesh = self.ctx.mesh
        if "peer-probes" not in mesh.capabilities.evidence or not isinstance(mesh, CertificateView):
            self.mtls_problem = f"the {mesh.name} mesh driver cannot probe its listeners as a bad peer"
            return None
        try:
            return [p for svc in self.ctx.env.spec.services for p in mesh.probe_peers(svc.name)]
        except HarnessError as exc:
            self.mtls_problem = f"the probes could not be made: {exc}"
            return None

    def _end_of_window(self, phase: str) -> None:
        """What an ``mtls`` expectation reads at a window's end, taken before its last scrape."""
        if not self.mtls_wanted:
            return
        self.certs_after[phase] = self._certificates()
        if self.probes_wanted:
            self.probes[phase] = self._probe_peers()

    def evidence(self, extra: dict[str, _Window] | None = None) -> Evidence:
        windows = dict(self.windows, **(extra or {}))
        policies = self._policies()
        out = {name: self._evidence_window(name, w, policies) for name, w in windows.items()}
        if "baseline" in windows and "recovery" in windows:
            b, rc = windows["baseline"], windows["recovery"]
            out["all"] = self._evidence_window("all", _Window(b.start, rc.end, b.before, rc.after), policies)
        return Evidence(out, self.r.confidence, self.r.window_confidence())

    # -------------------------------------------------------------------------------- steps
    def apply_policies(self) -> None:
        """The experiment's policy changes, and, for a refusal test on a mesh that does not hold the declared
        admission by itself, that admission (:class:`~harness.mesh.base.AdmissionControl`): both before the
        baseline, undone after the recovery with everything else."""
        if self.probes_wanted and isinstance(self.ctx.mesh, AdmissionControl):
            # Every service's prepared before any is written: a refusal comes before anything is in force.
            for prepared in [self.ctx.mesh.prepare(i) for i in self.ctx.mesh.admission(self.exp.refused_peers)]:
                self.ctx.journal.record(prepared.description, prepared.undo)
                self.ctx.mesh.apply(prepared)
                self.ctx.on_event(prepared.description)
        for change in self.exp.policy:
            fields = change.model_dump(exclude_none=True, exclude={"from_", "to"}, mode="json")
            self._change(PolicyOverride(change.from_, change.to, fields))
            self.ctx.on_event(f"policy {change.from_}->{change.to}: {fields}")

    def stop_load(self) -> None:
        """Stop the load generator and take its last records (a timeline's tail); idempotent."""
        if self.load is not None:
            self.load.stop()
            self._pull()

    def start_load(self) -> None:
        spec = LoadSpec(users=self.r.users, rate=self.r.rate, path=self.r.path, headers=self.r.headers,
                        duration_s=self.r.max_duration_s + LOAD_MARGIN_S, workers=self.r.workers,
                        remote_workers=self.r.remote_workers, master_port=self.r.master_port)
        workdir = self.ctx.workdir / "load"
        workdir.mkdir(parents=True, exist_ok=True)
        self.load = LoadGenerator(spec, self.ctx.gateway_url, workdir)
        self.load.start()
        if spec.remote_workers:
            script = workdir / "remote-worker.sh"
            script.write_text(self.load.remote_worker_script())
            script.chmod(0o700)  # it carries the load's headers, which may hold a token
            self.ctx.on_event(f"load: waiting (at most {REMOTE_WAIT_S}s) for {spec.remote_workers} remote worker(s) "
                              f"at 127.0.0.1:{spec.master_port}; start each with {script} (it serves every "
                              "experiment of the run)")
        self.load.wait_ready(30.0 + (REMOTE_WAIT_S if spec.remote_workers else 0))
        count = self.r.workers + self.r.remote_workers
        workers = f" in {count} Locust workers" if count else ""
        self.ctx.on_event(f"load: {self.r.users} users at {self.r.rate:g} req/s{workers}")

    def apply_faults(self, start: float = 0.0, window_opens: float = 0.0) -> None:
        """Apply the fault phase's faults; a ``cert-rotation`` is only scheduled: ``at`` after ``start``
        (without ``at``, at ``window_opens``), applied from :meth:`_sleep_until`."""
        for fault in self.exp.faults:
            if isinstance(fault, TrafficShift):
                continue  # its steps are applied one by one while the phase runs (run_shift)
            if isinstance(fault, CertRotation):
                self.deferred.append((start + fault.at if fault.at is not None else window_opens, fault))
                self.deferred.sort(key=lambda item: item[0])
                continue
            self._apply_fault(fault)

    def _apply_due(self) -> None:
        """Apply every deferred fault whose time has come (not once an abort removed the faults)."""
        while self.deferred and self.deferred[0][0] < time.time() and not self.aborted:
            _, fault = self.deferred.pop(0)
            self._apply_fault(fault)

    def _apply_fault(self, fault: Fault) -> None:
        """Journal and make every change of one fault; record when it was applied and how long it took."""
        applied_at = self._rel(time.time())
        intents = intents_for(fault)
        done = [self._change(intent) for intent in intents]
        # A kill without restart stays until the experiment's rollback, not the end of the fault phase.
        self.fault_seqs += [seq for (seq, _, _), intent in zip(done, intents, strict=True)
                            if not (isinstance(intent, ProcessSignal) and not intent.restart)]
        description = "; ".join(text for _, text, _ in done)
        activation = max(ms for _, _, ms in done)
        self.result.faults.append(FaultRecord(fault.kind, description, applied_at, None, activation))
        self.ctx.on_event(f"fault applied: {description} ({activation:.1f} ms)")

    def remove_faults(self) -> None:
        journal = self.ctx.journal
        pending = {p.seq: p for p in journal.pending()}
        for seq in reversed(self.fault_seqs):
            if seq in pending:
                apply_undo(self.ctx.mesh, pending[seq].undo)
                journal.done(seq)
                self.result.rollback_actions += 1
        now = self._rel(time.time())
        for record in self.result.faults:
            if record.removed_at is None:
                record.removed_at = now
        self.fault_seqs.clear()
        for _, fault in self.deferred:
            self.ctx.on_event(f"fault {fault.kind} not applied: the fault phase ended first")
        self.deferred.clear()

    def run_shift(self, shift: TrafficShift, watch: AbortWatch | None) -> None:
        """Move the split through the steps: each step a journalled route change, confirmed on every calling
        Envoy before its hold starts, with a window of its own (``step N``) after the settle time. With
        ``on_fail: halt``, the step's expectations are judged as it ends; the first that fails stops the
        shift and rolls the route back to the environment's split (Flagger's analysis, measured)."""
        applied_at = self._rel(time.time())
        record = FaultRecord(shift.kind, "", applied_at, None, None)
        self.result.faults.append(record)
        steps = shift_steps(shift)
        for n, (change, hold) in enumerate(steps, start=1):
            if self.aborted:
                return
            seq, description, activation = self._change(change)
            step_start = time.time()  # the hold starts once every calling Envoy routes by the new split
            self.phase_label, self.phase_end = f"step {n}/{len(steps)}", step_start + hold
            self.fault_seqs.append(seq)
            record.description = f"step {n} of {len(steps)}: {description}"
            record.activation_ms = max(record.activation_ms or 0.0, activation)
            self.ctx.on_event(f"shift {shift.service} step {n}/{len(steps)}: {description} ({activation:.1f} ms)")
            self._sleep_until(step_start + min(self.r.settle_s, hold / 2), watch)
            before = self.ctx.source.scrape()
            w_start = before.t  # the instant the counters were read for (a sampling source answers later)
            self._sleep_until(step_start + hold, watch)
            after = self.ctx.source.scrape()
            self._pull()
            self.windows[f"step {n}"] = _Window(w_start, after.t, before, after)
            self.result.steps.append(StepRecord(n, dict(change.weights), self._rel(step_start),
                                                self._rel(time.time()),
                                                sum(1 for r in self.records if w_start <= r.t < after.t)))
            if shift.on_fail == "halt":
                failed = self._failed_expectations(f"step {n}")
                if failed:
                    self.result.halted = {"step": n, "reason": "; ".join(failed)}
                    self.ctx.on_event(f"shift halted at step {n}: {'; '.join(failed)}")
                    self.remove_faults()  # back to the environment's split, as Flagger rolls back
                    return

    def _failed_expectations(self, window: str) -> list[str]:
        exps = [e for e in self.exp.expect if window_of(e) == window]
        if not exps:
            return []
        evidence = self.evidence()
        return [f"{e.kind}: {out.message}" for e in exps if (out := evaluate(e, evidence)).verdict == "fail"]

    def run_phase(self, phase: PhasePlan) -> None:
        start = time.time()
        if phase.name == "recovery" and min(self.r.settle_s, phase.min_s / 2) >= PREWARM_SETTLE_S:
            # The next experiment's Locust imports (about a second of one core) in this phase's settle time,
            # which no window reads; started later it would not be ready when that experiment starts.
            prewarm()
        self.phase_label, self.phase_end = phase.name, start + phase.max_s
        shift = next((f for f in self.exp.faults if isinstance(f, TrafficShift)), None)
        if self.mtls_wanted:
            self.certs_before[phase.name] = self._certificates()
        if phase.name == "fault":
            self.apply_faults(start, start + min(self.r.settle_s, phase.min_s / 2))
        watch = None
        if phase.name == "fault" and self.exp.abort_if:
            policies = self._policies()
            nodes = self.ctx.source.node_info
            watch = AbortWatch(self.exp.abort_if, lambda before, after: WindowEvidence(
                "abort_if", before.t, after.t, [], delta(before, after), nodes, policies))
        if phase.name == "fault" and shift is not None:
            before = self.ctx.source.scrape()
            w_start = before.t  # the instant the counters were read for (a sampling source answers later)
            self.run_shift(shift, watch)
        else:
            settle_until = start + min(self.r.settle_s, phase.min_s / 2)
            self._sleep_until(settle_until, watch)
            before = self.ctx.source.scrape()
            w_start = before.t  # the instant the counters were read for (a sampling source answers later)
        window: _Window | None = None
        if self.result.halted is not None and phase.name == "fault":
            # A halted shift ends the fault phase there, as Flagger's rollback ends the canary analysis.
            self._end_of_window(phase.name)
            after = self.ctx.source.scrape()
            window = _Window(w_start, after.t, before, after)
        elif phase.adaptive:
            # Judged only at the looks fixed in advance (their number sets each look's confidence); the
            # last look, at max, is the end of the phase below.
            for look in phase.looks[:-1]:
                self._sleep_until(start + look, watch)
                if self.aborted and watch is not None:
                    break
                self._pull()
                snap = self.ctx.source.scrape()
                # The window judged settled is the window kept: judging a slightly longer one at the end
                # could turn a verdict that was just settled at the margin back into an inconclusive one.
                candidate = _Window(w_start, snap.t - RECORD_LAG_S, before, snap)
                if self._settled(phase.name, candidate):
                    window = candidate
                    self._end_of_window(phase.name)
                    break
        if window is None:
            self._sleep_until(start + phase.max_s, watch)
            self._end_of_window(phase.name)
            after = self.ctx.source.scrape()
            window = _Window(w_start, after.t, before, after)
        w_end = window.end
        self._pull()
        if phase.name == "fault":
            self.remove_faults()
        self.windows[phase.name] = window
        requests = sum(1 for r in self.records if start <= r.t < w_end)
        self.result.phases[phase.name] = PhaseRecord(self._rel(start), self._rel(w_end), requests)

    def _sleep_until(self, deadline: float, watch: AbortWatch | None) -> None:
        """Wait, reading records; with an abort ``watch`` (fault phase), stop early once it fires.

        An abort ends only the fault phase: the recovery phase then runs in full, as SUITE-FORMAT §2 says
        ("skips to recovery"), so the results show whether the mesh recovered once the fault was gone.
        """
        while not (self.aborted and watch is not None):
            if time.time() >= deadline:
                return
            # Only what is due before this wait's deadline: a rotation due as the window opens is applied
            # once the window has opened (its first scrape taken), never at the end of the settle time.
            self._apply_due()
            now = time.time()
            if now >= deadline:
                return
            due = self.deferred[0][0] if self.deferred else deadline
            time.sleep(max(0.0, min(TICK_S, deadline - now, due - now)))
            self._pull()
            self._show_progress()
            if watch is not None:
                if watch.due(time.time()):
                    watch.observe(self.ctx.source.scrape())
                reason = watch.check(self.records, time.time())
                if reason:
                    self.aborted = reason
                    self.remove_faults()
                    self.ctx.on_event(f"aborted: {reason}")

    def _show_progress(self) -> None:
        """Hand the callback a look at the run, at most every PROGRESS_EVERY_S; it may never break a run."""
        now = time.time()
        if self.ctx.on_progress is None or now - self.progress_at < PROGRESS_EVERY_S:
            return
        self.progress_at = now
        with contextlib.suppress(Exception):
            rps, success, p99 = recent(self.records, now)
            active = tuple(dict.fromkeys(f.kind for f in self.result.faults if f.removed_at is None))
            self.ctx.on_progress(Progress(self.exp.name, self.phase_label, max(0.0, self.phase_end - now), rps,
                                          success, p99, active))

    def _settled(self, window: str, w: _Window) -> bool:
        if window == "fault" and self.deferred:
            return False  # a fault phase never ends before every one of its faults was applied
        if any(isinstance(e, MtlsExpectation) and window_of(e) == window for e in self.exp.expect):
            # Certificates and probes are read at the window's end, and a census that passes at a look
            # just after a rotation would end the window before traffic used the new certificates.
            return False
        exps = [e for e in self.exp.expect if window_of(e) == window]
        if not exps:
            return True
        evidence = self.evidence({window: w})
        return all(evaluate(e, evidence).verdict != "inconclusive" for e in exps)

    def finish_verdict(self) -> None:
        evidence = self.evidence()
        outcomes: list[Outcome] = [evaluate(e, evidence) for e in self.exp.expect]
        self.result.expectations = outcomes
        verdicts = {o.verdict for o in outcomes}
        if self.aborted:
            self.result.verdict, self.result.aborted_by = "aborted", self.aborted
        elif "fail" in verdicts:
            self.result.verdict = "fail"
        elif "inconclusive" in verdicts and not self.r.inconclusive_passes:
            self.result.verdict = "inconclusive"
        else:
            self.result.verdict = "pass"


def _certificate_marks(mesh: object, t0: float) -> list[dict[str, object]]:
    """Each certificate stage confirmed on every sidecar during this experiment, for the timeline picture:
    from the driver's stage log (``certificate_stages``, where it keeps one); none from a driver without."""
    stages = getattr(mesh, "certificate_stages", None)
    if not callable(stages):
        return []
    try:
        log = stages()
    except Exception:  # a picture's detail: never worth failing an experiment for
        return []
    now = time.time()
    return [{"t": round(float(e["t"]) - t0, 3), "label": f"certificates: {e['stage']}"}
            for e in log if e.get("event") == "confirmed" and isinstance(e.get("t"), int | float)
            and t0 <= float(e["t"]) <= now and isinstance(e.get("stage"), str)]


def run_experiment(ctx: RunContext, resolved: Resolved) -> ExperimentResult:
    """Run one experiment; never leaves a change applied, and never raises for a failed verdict.

    A harness error (the mesh, a fault or the load failed) becomes the verdict ``error``; any other
    exception is a bug, and is raised as :class:`ExperimentCrashed` once the rollback has run.
    """
    x = _Experiment(ctx, resolved)
    crashed: Exception | None = None
    try:
        x.apply_policies()
        x.start_load()
        for phase in resolved.phases:
            if phase.name == "fault" and x.aborted:
                continue
            x.run_phase(phase)
        # The windows are over: the load has nothing left to show, so it stops now (the machine's cores go to the
        # verdict and the rollback). A spare Locust for the next experiment, if the recovery's settle time had
        # none started, imports while this one is judged.
        x.stop_load()
        prewarm()
        x.finish_verdict()
    except HarnessError as exc:  # the mesh, a fault or the load failed: an `error` verdict, not a bug
        x.result.verdict = "error"
        x.result.error = f"{type(exc).__name__}: {exc}" if not str(exc).startswith(type(exc).__name__) else str(exc)
        x.result.error_exit = exc.exit_code
    except Exception as exc:  # a bug of ours: roll back below, then let it surface as one (exit 4)
        x.result.verdict = "error"
        x.result.error = f"internal error (a bug in mesh-harness): {type(exc).__name__}: {exc}"
        crashed = exc
    finally:
        # Signals wait until this block is done: a second Ctrl-C must not abandon the rollback.
        # Each step on its own: a rollback that raises must not leave the load generator running.
        with signals_deferred():
            actions, errors = 0, list[str]()
            try:
                actions, errors = rollback(ctx.mesh, ctx.journal)
            except Exception as exc:  # the journal itself could not be read: cleanup must take over
                errors = [f"{type(exc).__name__}: {exc}"]
            if x.load is not None:
                try:
                    x.load.stop()
                except Exception as exc:
                    errors.append(f"stopping the load generator: {exc}")
        x.result.rollback_actions += actions
        x.result.rollback_complete = not errors
        if errors:
            # A change may be left on the mesh: whatever the verdict was, the run did not end cleanly.
            x.result.error = ((x.result.error or "") + " rollback errors: " + "; ".join(errors)).strip()
            x.result.verdict, x.result.error_exit = "error", 3
        x.result.duration_s = time.time() - x.t0
        x.result.timeline = timeline(x.records, x.t0)
        x.result.marks = _certificate_marks(ctx.mesh, x.t0)
    if crashed is not None:
        x.result.error_exit = 4  # a bug of ours: what the results JSON says, as the command's exit code does
        raise ExperimentCrashed(x.result, crashed) from crashed
    return x.result
