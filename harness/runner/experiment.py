"""One experiment, start to finish: policy, load, baseline → fault → recovery, verdicts, rollback.

Every mesh change is journalled before it is made and undone in ``finally``, newest first, whatever
happens in between (a failed expectation, an exception, Ctrl-C). Windows skip the first ``settle`` of
each phase so they show the state the phase set up, not the transition into it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness._errors import HarnessError
from harness.assertions import Evidence, Outcome, WindowEvidence, evaluate
from harness.assertions.registry import window_of
from harness.faults import intents_for, shift_steps
from harness.mesh.base import GATEWAY, MeshDriver, MetricSource
from harness.mesh.intents import Intent, PolicyOverride, ProcessSignal
from harness.mesh.policy import ResolvedPolicy
from harness.metrics.snapshot import Snapshot, delta
from harness.model.environment import Environment
from harness.model.suite import LOAD_MARGIN_S, TrafficShift
from harness.runner.abort import AbortWatch
from harness.runner.journal import Journal
from harness.runner.results import ExperimentCrashed, ExperimentResult, FaultRecord, PhaseRecord, StepRecord
from harness.runner.settings import PhasePlan, Resolved
from harness.runner.undo import apply_undo, rollback, signals_deferred
from harness.traffic.load import LoadGenerator, LoadSpec, Record

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
        self.windows: dict[str, _Window] = {}
        self.fault_seqs: list[int] = []
        self.t0 = time.time()
        self.load: LoadGenerator | None = None
        self.aborted: str | None = None

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
        return WindowEvidence(name, w.start, w.end, recs, delta(w.before, w.after), self.ctx.source.node_info,
                              policies, counter_span=w.after.t - w.before.t)

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
        for change in self.exp.policy:
            fields = change.model_dump(exclude_none=True, exclude={"from_", "to"}, mode="json")
            self._change(PolicyOverride(change.from_, change.to, fields))
            self.ctx.on_event(f"policy {change.from_}->{change.to}: {fields}")

    def start_load(self) -> None:
        spec = LoadSpec(users=self.r.users, rate=self.r.rate, path=self.r.path, headers=self.r.headers,
                        duration_s=self.r.max_duration_s + LOAD_MARGIN_S)
        workdir = self.ctx.workdir / "load"
        workdir.mkdir(parents=True, exist_ok=True)
        self.load = LoadGenerator(spec, self.ctx.gateway_url, workdir)
        self.load.start()
        self.load.wait_ready(30.0)
        self.ctx.on_event(f"load: {self.r.users} users at {self.r.rate:g} req/s")

    def apply_faults(self) -> None:
        for fault in self.exp.faults:
            if isinstance(fault, TrafficShift):
                continue  # its steps are applied one by one while the phase runs (run_shift)
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
            self.fault_seqs.append(seq)
            record.description = f"step {n} of {len(steps)}: {description}"
            record.activation_ms = max(record.activation_ms or 0.0, activation)
            self.ctx.on_event(f"shift {shift.service} step {n}/{len(steps)}: {description} ({activation:.1f} ms)")
            self._sleep_until(step_start + min(self.r.settle_s, hold / 2), watch)
            before = self.ctx.source.scrape()
            w_start = time.time()
            self._sleep_until(step_start + hold, watch)
            after = self.ctx.source.scrape()
            self._pull()
            self.windows[f"step {n}"] = _Window(w_start, time.time(), before, after)
            self.result.steps.append(StepRecord(n, dict(change.weights), self._rel(step_start),
                                                self._rel(time.time()),
                                                sum(1 for r in self.records if w_start <= r.t < time.time())))
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
        shift = next((f for f in self.exp.faults if isinstance(f, TrafficShift)), None)
        if phase.name == "fault":
            self.apply_faults()
        watch = None
        if phase.name == "fault" and self.exp.abort_if:
            policies = self._policies()
            nodes = self.ctx.source.node_info
            watch = AbortWatch(self.exp.abort_if, lambda before, after: WindowEvidence(
                "abort_if", before.t, after.t, [], delta(before, after), nodes, policies))
        if phase.name == "fault" and shift is not None:
            before = self.ctx.source.scrape()
            w_start = time.time()
            self.run_shift(shift, watch)
        else:
            settle_until = start + min(self.r.settle_s, phase.min_s / 2)
            self._sleep_until(settle_until, watch)
            before = self.ctx.source.scrape()
            w_start = time.time()
        window: _Window | None = None
        if self.result.halted is not None and phase.name == "fault":
            # A halted shift ends the fault phase there, as Flagger's rollback ends the canary analysis.
            window = _Window(w_start, time.time(), before, self.ctx.source.scrape())
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
                    break
        if window is None:
            self._sleep_until(start + phase.max_s, watch)
            after = self.ctx.source.scrape()
            window = _Window(w_start, time.time(), before, after)
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
            now = time.time()
            if now >= deadline:
                return
            time.sleep(min(TICK_S, deadline - now))
            self._pull()
            if watch is not None:
                if watch.due(time.time()):
                    watch.observe(self.ctx.source.scrape())
                reason = watch.check(self.records, time.time())
                if reason:
                    self.aborted = reason
                    self.remove_faults()
                    self.ctx.on_event(f"aborted: {reason}")

    def _settled(self, window: str, w: _Window) -> bool:
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
    if crashed is not None:
        raise ExperimentCrashed(x.result, crashed) from crashed
    return x.result
