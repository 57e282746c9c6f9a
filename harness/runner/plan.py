"""``plan``: the timeline of each experiment and every concrete change it will make. Applies nothing.

The plan is built once as plain data (:func:`build_plan`, what ``plan --json`` prints, in the spirit of
``terraform plan -json``) and rendered to text from that data (:func:`render_plan`), so the two can
never disagree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from harness._errors import MeshError
from harness.faults import intents_for, shift_steps
from harness.mesh.base import AdmissionControl, MeshDriver, Prepared
from harness.mesh.intents import Intent, PolicyOverride
from harness.mesh.policy import ResolvedPolicy, merge_policy, resolve
from harness.model.durations import format_duration
from harness.model.environment import EdgePolicy, Environment
from harness.model.suite import CertRotation, Experiment, Suite, TrafficShift
from harness.runner.settings import Resolved, resolve_experiment

__all__ = ["build_plan", "describe_policy", "render_plan"]

Json = dict[str, Any]

_WHAT = {"baseline": "load, no fault", "fault": "faults applied at its start, removed at its end",
         "recovery": "load, no fault"}


def describe_policy(p: ResolvedPolicy) -> str:
    retries = (f"{p.retries} retries on {','.join(p.retry_on)}"
               + (f" per-try {format_duration(p.per_try_timeout_s)}" if p.per_try_timeout_s else "")
               if p.retries else "no retries")
    od = (f"outlier detection consecutive_5xx={p.outlier.consecutive_5xx} interval="
          f"{format_duration(p.outlier.interval_s)} ejection={format_duration(p.outlier.base_ejection_time_s)} "
          f"max={p.outlier.max_ejection_percent:g}% panic below {p.outlier.min_health_percent:g}% healthy"
          if p.outlier else "no outlier detection")
    timeout = f"timeout {format_duration(p.timeout_s)}" if p.timeout_s else "no route timeout"
    text = (f"{retries}; {timeout}; breaker connections={p.max_connections} "
            f"pending={p.max_pending} requests={p.max_requests} retries={p.max_retries}; {od}")
    if p.defaulted:
        text += f"  [defaults: {', '.join(p.defaulted)}]"
    return text


def _policy_json(p: ResolvedPolicy) -> Json:
    data = dataclasses.asdict(p)
    data["retry_on"] = list(p.retry_on)
    data["defaulted"] = list(p.defaulted)
    data["text"] = describe_policy(p)
    return data


def _change_json(prepared: Prepared) -> Json:
    data: Json = {"description": prepared.description, "do": prepared.do, "undo": prepared.undo}
    if prepared.stages:
        data["stages"] = list(prepared.stages)
    return data


def _phases(r: Resolved) -> list[Json]:
    out: list[Json] = []
    t_min = t_max = 0.0
    confidences = r.window_confidence()
    for phase in r.phases:
        out.append({
            "name": phase.name, "start_s": [t_min, t_max], "min_s": phase.min_s, "max_s": phase.max_s,
            "adaptive": phase.adaptive, "looks_s": list(phase.looks) if phase.adaptive else [],
            "look_confidence": confidences.get(phase.name), "settle_s": r.settle_s, "what": _WHAT[phase.name],
        })
        t_min += phase.min_s
        t_max += phase.max_s
    return out


def _edge_policy(env: Environment, mesh: MeshDriver, caller: str, callee: str) -> ResolvedPolicy:
    """The policy the mesh has on an edge: the driver's word (an Istio mesh reads its objects, with Istio's
    defaults), else, for a local mesh that is not running, the environment's with plain Envoy's defaults."""
    try:
        return mesh.policy(caller, callee)
    except MeshError:
        return resolve(env.spec.call(caller, callee))


def _policy_change(env: Environment, mesh: MeshDriver, change: Any) -> Json:
    declared = env.spec.call(change.from_, change.to)
    fields = change.model_dump(exclude_none=True, exclude={"from_", "to"}, mode="json")
    override = EdgePolicy.model_validate(fields)
    prepared = mesh.prepare(PolicyOverride(change.from_, change.to, fields))
    after = getattr(mesh, "policy_after", None)  # a driver whose policy lives in its objects says what it becomes
    return {
        "edge": f"{change.from_}->{change.to}",
        "before": _policy_json(_edge_policy(env, mesh, change.from_, change.to)),
        "after": _policy_json(after(prepared, change.from_, change.to) if after is not None
                              else resolve(merge_policy(declared, override))),
        "change": _change_json(prepared),
    }


def _fault(mesh: MeshDriver, fault: Any, r: Resolved) -> Json:
    if isinstance(fault, CertRotation):
        # Applied from inside the phase: `at` into it, or as its window opens (after the settle).
        fault_phase = next(p for p in r.phases if p.name == "fault")
        at = fault.at if fault.at is not None else min(r.settle_s, fault_phase.min_s / 2)
        return {"kind": fault.kind, "at_s": at, "at_given": fault.at is not None,
                "changes": [_change_json(mesh.prepare(i)) for i in intents_for(fault)]}
    if isinstance(fault, TrafficShift):
        changes = []
        for n, (change, hold) in enumerate(shift_steps(fault), start=1):
            step = _change_json(mesh.prepare(change))
            step["description"] = f"step {n}, held {format_duration(hold)}: {step['description']}"
            changes.append(step | {"step": n, "hold_s": hold})
        return {"kind": fault.kind, "changes": changes, "on_fail": fault.on_fail}
    return {"kind": fault.kind, "changes": [_change_json(mesh.prepare(i)) for i in intents_for(fault)]}


def _admission(mesh: MeshDriver, exp: Experiment) -> list[Intent]:
    """What a run puts in force before the baseline for a refusal test (as the runner's apply_policies)."""
    rejects = exp.refused_peers
    return mesh.admission(rejects) if rejects and isinstance(mesh, AdmissionControl) else []


def _experiment(suite: Suite, env: Environment, mesh: MeshDriver, exp: Experiment) -> Json:
    r = resolve_experiment(suite, exp)
    return {
        "name": exp.name, "description": exp.description, "tags": list(exp.tags),
        "load": {"users": r.users, "rate": r.rate, "path": r.path, "headers": r.headers},
        "confidence": r.confidence,
        "phases": _phases(r),
        "admission": [_change_json(mesh.prepare(i)) for i in _admission(mesh, exp)],
        "policy": [_policy_change(env, mesh, c) for c in exp.policy],
        "faults": [_fault(mesh, f, r) for f in exp.faults],
        "abort_if": [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in exp.abort_if],
        "expect": [e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in exp.expect],
    }


def build_plan(suite: Suite, env: Environment, mesh: MeshDriver,
               select: Callable[[Suite, Experiment], bool] | None = None) -> Json:
    """Everything ``plan`` shows, as JSON-able data (``plan --json`` prints a list of these).

    Every change is prepared by ``mesh``, the environment's driver, exactly as a run would prepare it
    (nothing is applied, and the mesh need not run). ``select`` (``-k``) keeps only the experiments a
    run with the same ``-k`` would run.
    """
    chosen = [e for e in suite.spec.experiments if select is None or select(suite, e)]
    plan: Json = {
        "suite": suite.metadata.name, "environment": env.metadata.name, "mesh": env.spec.mesh,
        "experiments": [_experiment(suite, env, mesh, e) for e in chosen],
        "edges": [{"edge": f"{a}->{b}", "policy": _policy_json(_edge_policy(env, mesh, a, b))}
                  for a, b in env.spec.edges()],
    }
    drift = getattr(mesh, "policy_drift", None)  # a mesh the harness does not start: declared vs actual policy
    if drift is not None:
        plan["drift"] = drift()
    return plan


def _render_phase(phase: Json) -> str:
    t_min, t_max = phase["start_s"]
    if phase["adaptive"]:
        looks = ", ".join(f"{t:.3g}s" for t in phase["looks_s"])
        span = (f"{format_duration(phase['min_s'])}..{format_duration(phase['max_s'])} (adaptive: ends at the "
                f"first look where every expectation on it is settled; looks at {looks}, each at "
                f"confidence {phase['look_confidence']:.4g})")
    else:
        span = format_duration(phase["min_s"])
    at = f"t+{t_min:g}s" if t_min == t_max else f"t+{t_min:g}..{t_max:g}s"
    return (f"  {at:<12} {phase['name']:<8} {span}; {phase['what']}; "
            f"window after {format_duration(phase['settle_s'])} settle")


def _render_fault(fault: Json) -> list[str]:
    if "at_s" in fault:
        when = (f"{format_duration(fault['at_s'])} into the fault phase" if fault["at_given"] else
                f"as the fault window opens ({format_duration(fault['at_s'])} into the phase)")
        lines = []
        for change in fault["changes"]:
            lines.append(f"  fault {fault['kind']} {when}: {change['description']}")
            lines += [f"    stage {n}: {stage}" for n, stage in enumerate(change.get("stages", []), start=1)]
        return lines
    lines = [f"  fault {fault['kind']} during fault phase: {change['description']}" for change in fault["changes"]]
    if fault.get("on_fail") == "halt":
        lines.append("    on_fail: halt: a step whose expectations fail stops the shift and restores the split")
    return lines


def _render_experiment(exp: Json) -> list[str]:
    load = exp["load"]
    lines = [f"\nexperiment {exp['name']}" + (f" — {exp['description']}" if exp["description"] else ""),
             f"  load: {load['users']} users, {load['rate']:g} req/s total, GET {load['path']}; "
             f"confidence {exp['confidence']}"]
    lines += [_render_phase(p) for p in exp["phases"]]
    lines += [f"  admission (before baseline, removed after recovery): {change['description']}"
              for change in exp.get("admission", [])]
    for change in exp["policy"]:
        lines += [f"  policy {change['edge']} (before baseline, restored after recovery):",
                  f"    from: {change['before']['text']}",
                  f"    to:   {change['after']['text']}",
                  f"    changes: {change['change']['description']}"]
    lines += [line for f in exp["faults"] for line in _render_fault(f)]
    for cond in exp["abort_if"]:
        bound = f"below {cond['below']}" if "below" in cond else f"above {cond['above']}"
        lines.append(f"  abort if {cond['signal']} ({cond['scope']}) {bound} for {cond['for']}")
    for e in exp["expect"]:
        rest = {k: v for k, v in e.items() if k != "kind"}
        lines.append(f"  expect {e['kind']}: " + _compact_json(rest))
    return lines


def _compact_json(data: Json) -> str:
    import json

    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def render_plan(plan: Json) -> str:
    """The text ``plan`` prints, from :func:`build_plan`'s data."""
    lines = [f"suite {plan['suite']} on environment {plan['environment']} (mesh: {plan['mesh']})"]
    for exp in plan["experiments"]:
        lines += _render_experiment(exp)
    lines.append("\nedge policies in force (environment + mesh defaults):")
    lines += [f"  {e['edge']}: {e['policy']['text']}" for e in plan["edges"]]
    drift = plan.get("drift")
    if drift is not None:
        if not drift["compared"]:
            lines.append(f"\ndeclared policy vs the mesh: not compared ({drift['reason']})")
        elif not drift["differences"]:
            lines.append("\ndeclared policy vs the mesh: the same")
        else:
            lines.append("\ndeclared policy vs the mesh (- as the mesh has it, + as declared):")
            for d in drift["differences"]:
                lines.append(f"  {d['object']}: {d['status']}")
                lines += [f"    {line}" for line in d["diff"].splitlines()]
    return "\n".join(lines)
