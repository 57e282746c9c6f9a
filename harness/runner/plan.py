"""``plan``: the timeline of each experiment and every concrete change it will make. Applies nothing."""

from __future__ import annotations

from harness.mesh.local.envoy_config import FAULT_DENOMINATOR, cluster_name, fault_runtime_keys
from harness.mesh.policy import ResolvedPolicy, merge_policy, resolve
from harness.model.durations import format_duration
from harness.model.environment import EdgePolicy, Environment
from harness.model.suite import HttpAbort, HttpDelay, Suite
from harness.runner.settings import resolve_experiment

__all__ = ["describe_policy", "render_plan"]


def describe_policy(p: ResolvedPolicy) -> str:
    retries = (f"{p.retries} retries on {','.join(p.retry_on)}"
               + (f" per-try {format_duration(p.per_try_timeout_s)}" if p.per_try_timeout_s else "")
               if p.retries else "no retries")
    od = (f"outlier detection consecutive_5xx={p.outlier.consecutive_5xx} interval="
          f"{format_duration(p.outlier.interval_s)} ejection={format_duration(p.outlier.base_ejection_time_s)} "
          f"max={p.outlier.max_ejection_percent:g}%" if p.outlier else "no outlier detection")
    text = (f"{retries}; timeout {format_duration(p.timeout_s)}; breaker connections={p.max_connections} "
            f"pending={p.max_pending} requests={p.max_requests} retries={p.max_retries}; {od}")
    if p.defaulted:
        text += f"  [defaults: {', '.join(p.defaulted)}]"
    return text


def _instances(env: Environment, service: str, version: str | None) -> str:
    """The Envoys a change lands on, named as the local mesh names its instances."""
    svc = env.spec.service(service)
    names = [f"{service}-{v}-{i}" for v, spec in svc.versions.items() if version in (None, v)
             for i in range(spec.replicas)]
    return ", ".join(names)


def render_plan(suite: Suite, env: Environment) -> str:
    lines = [f"suite {suite.metadata.name} on environment {env.metadata.name} (mesh: {env.spec.mesh})"]
    for exp in suite.spec.experiments:
        r = resolve_experiment(suite, exp)
        lines.append(f"\nexperiment {exp.name}" + (f" — {exp.description}" if exp.description else ""))
        lines.append(f"  load: {r.users} users, {r.rate:g} req/s total, GET {r.path}; confidence {r.confidence}")
        t_min = t_max = 0.0
        for phase in r.phases:
            if phase.adaptive:
                looks = ", ".join(f"{t:.3g}s" for t in phase.looks)
                span = (f"{format_duration(phase.min_s)}..{format_duration(phase.max_s)} (adaptive: ends at the "
                        f"first look where every expectation on it is settled; looks at {looks}, each at "
                        f"confidence {r.window_confidence()[phase.name]:.4g})")
            else:
                span = format_duration(phase.min_s)
            at = f"t+{t_min:g}s" if t_min == t_max else f"t+{t_min:g}..{t_max:g}s"
            what = {"baseline": "load, no fault", "fault": "faults applied at its start, removed at its end",
                    "recovery": "load, no fault"}[phase.name]
            settle = format_duration(r.settle_s)
            lines.append(f"  {at:<12} {phase.name:<8} {span}; {what}; window after {settle} settle")
            t_min += phase.min_s
            t_max += phase.max_s
        for change in exp.policy:
            declared = env.spec.call(change.from_, change.to)
            before = resolve(declared)
            override = EdgePolicy.model_validate(change.model_dump(exclude_none=True, exclude={"from_", "to"}))
            after = resolve(merge_policy(declared, override))
            lines.append(f"  policy {change.from_}->{change.to} (before baseline, restored after recovery):")
            lines.append(f"    from: {describe_policy(before)}")
            lines.append(f"    to:   {describe_policy(after)}")
            clusters = ", ".join(cluster_name(change.to, v) for v in env.spec.service(change.to).versions)
            lines.append(f"    Envoy: clusters {clusters} and route of listener outbound_{change.to} "
                         f"on {_instances(env, change.from_, None)} (CDS, then LDS)")
        for fault in exp.faults:
            if isinstance(fault, HttpAbort | HttpDelay):
                scope = "inbound" if fault.at == "target" else f"out.{fault.target.service}"
                keys = fault_runtime_keys(scope)
                value = round(fault.percent * FAULT_DENOMINATOR / 100)
                where = (f"the inbound fault filter of {_instances(env, fault.target.service, fault.target.version)}"
                         if fault.at == "target" else
                         f"the outbound_{fault.target.service} fault filter of "
                         + ", ".join(_instances(env, c, None) for c in env.spec.callers_of(fault.target.service)))
                if isinstance(fault, HttpAbort):
                    text = (f"{keys['abort.percent']}: 0 -> {value} (/{FAULT_DENOMINATOR}), "
                              f"{keys['abort.status']} -> {fault.status}")
                else:
                    text = (f"{keys['delay.percent']}: 0 -> {value} (/{FAULT_DENOMINATOR}), "
                              f"{keys['delay.ms']} -> {round(fault.delay * 1000)}")
                lines.append(f"  fault {fault.kind} on {where} during fault phase: runtime {text}")
            else:
                lines.append(f"  fault {fault.kind}: not supported by this version")
        for cond in exp.abort_if:
            bound = f"below {cond.below}" if cond.below is not None else f"above {cond.above}"
            lines.append(f"  abort if {cond.signal} ({cond.scope}) {bound} for {format_duration(cond.for_)}")
        for e in exp.expect:
            lines.append(f"  expect {e.kind}: " + e.model_dump_json(exclude={"kind"}, exclude_none=True, by_alias=True))
    lines.append("\nedge policies in force (environment + mesh defaults):")
    for a, b in env.spec.edges():
        lines.append(f"  {a}->{b}: {describe_policy(resolve(env.spec.call(a, b)))}")
    return "\n".join(lines)
