"""Checks of a suite against an environment, and against what this harness can do, before anything runs.

Schema validation knows the shapes; only the environment knows whether ``ratings`` exists or whether
``reviews -> ratings`` is an edge. Every problem is reported with its FILE:LINE:COL, all at once.
"""

from __future__ import annotations

from harness._errors import Problem
from harness.assertions import SUPPORTED_KINDS
from harness.assertions.registry import window_of
from harness.faults import IMPLEMENTED
from harness.mesh import DRIVERS, capabilities_of, environment_refusals, override_refusals, policy_refusals
from harness.mesh.base import Capabilities
from harness.model.common import Target
from harness.model.durations import format_duration
from harness.model.environment import EdgePolicy, Environment
from harness.model.loader import Loaded, Positions
from harness.model.suite import (
    CanaryExpectation,
    CertRotation,
    CertUntrusted,
    CircuitBreakerExpectation,
    Expectation,
    Fault,
    HttpAbort,
    HttpDelay,
    Kill,
    LoadSettings,
    MtlsExpectation,
    NetBandwidth,
    NetLatency,
    NetReset,
    OutlierEjectionExpectation,
    Partition,
    Pause,
    PromqlExpectation,
    RetriesExpectation,
    Slo,
    Suite,
    TimeoutExpectation,
    TrafficShift,
    TrafficSplitExpectation,
)
from harness.runner.safety import current_kube_context, kube_scope_problems
from harness.runner.settings import resolve_experiment

__all__ = ["check_suite"]


def evidence_needed(exp: Expectation) -> frozenset[str]:
    """What a driver's metrics must show for an expectation kind to be judged (its capabilities' evidence)."""
    if isinstance(exp, Slo):
        if exp.scope == "client":
            return frozenset({"client"})
        return frozenset({"sidecar-latency" if exp.signal == "latency" else "sidecar-counters"})
    if isinstance(exp, MtlsExpectation):
        needed: set[str] = set()
        if exp.failed_requests is not None or (exp.rotated is None and not exp.rejects):
            needed |= {"client", "sidecar-counters"}
        if exp.rotated is not None:
            needed.add("certificates")
        if exp.rejects:
            needed |= {"sidecar-counters", "peer-probes"}
        return frozenset(needed)
    needs = {
        "retries": {"client", "sidecar-counters"},
        "timeout": {"sidecar-counters"},
        "circuit-breaker": {"sidecar-counters"},
        "outlier-ejection": {"ejections"},
        "traffic-split": {"client"},
        "canary": {"sidecar-counters", "sidecar-latency"},
    }
    return frozenset(needs.get(exp.kind, set()))


def _load_field(load: LoadSettings | None, base: tuple[str | int, ...], name: str) -> tuple[str | int, ...]:
    """Where a merged load setting's problem is reported: the experiment's own field if it sets it, else
    the defaults' (each may be valid where it is written; the merge is what is wrong)."""
    return (*base, "load", name) if load is not None and getattr(load, name) is not None else (
        "spec", "defaults", "load", name)


def check_suite(loaded: Loaded[Suite], env: Environment, env_file: str,
                env_positions: Positions | None = None, kube_scope: bool = True) -> list[Problem]:
    """Every reference in the suite resolved against ``env``; every kind supported by the driver.

    Problems of the environment itself are located in the environment's file when its positions are given.
    ``kube_scope=False`` leaves out the kube context check, for ``plan``: it changes nothing, and a driver
    that reads a cluster for it checks the context itself (and plans without comparing when it may not).
    """
    pos = loaded.positions
    env_pos = env_positions or Positions(env_file)
    problems: list[Problem] = []
    spec = env.spec
    services = {s.name: s for s in spec.services}
    edges = set(spec.edges())

    def bad(path: tuple[str | int, ...], message: str) -> None:
        problems.append(pos.problem(path, message))

    def service(path: tuple[str | int, ...], name: str) -> bool:
        if name not in services:
            bad(path, f"no service '{name}' in environment {env.metadata.name} ({env_file}); "
                      f"services are: {', '.join(sorted(services))}")
            return False
        return True

    def target(path: tuple[str | int, ...], t: Target) -> None:
        if service((*path, "service"), t.service) and t.version and t.version not in services[t.service].versions:
            bad((*path, "version"), f"{t.service} has no version '{t.version}'; versions are: "
                                    f"{', '.join(services[t.service].versions)}")

    def edge(path: tuple[str | int, ...], caller: str, callee: str) -> None:
        if (caller, callee) not in edges:
            bad(path, f"{caller} -> {callee} is not an edge of environment {env.metadata.name}; "
                      f"edges are: {', '.join(f'{a}->{b}' for a, b in sorted(edges))}")

    def scope(path: tuple[str | int, ...], value: str) -> None:
        if value.startswith("service:"):
            service(path, value.split(":", 1)[1])
        elif value.startswith("edge:"):
            a, b = (x.strip() for x in value.split(":", 1)[1].split("->"))
            edge(path, a, b)

    def instances(path: tuple[str | int, ...], t: Target) -> int:
        svc = services[t.service]
        return sum(v.replicas for name, v in svc.versions.items() if t.version in (None, name))

    def other_fault(path: tuple[str | int, ...], fault: Fault, fault_phase_s: float, settle_s: float) -> None:
        """Network, partition, process, certificate faults and shifts: their edges, groups, instances and
        versions exist (and a deferred fault starts, and ends, within the fault phase)."""
        if isinstance(fault, CertRotation | CertUntrusted) and spec.mtls == "off":
            bad((*path, "kind"), f"environment {env.metadata.name} runs mtls: off: its sidecars have no certificates "
                                 f"for {fault.kind} to replace; set mtls: strict (or permissive) in {env_file}")
            return
        if isinstance(fault, CertUntrusted):
            target((*path, "target"), fault.target)
            return
        if isinstance(fault, CertRotation):
            what_refused = caps.refused.get(f"cert-rotation.what={fault.what}") if caps else None
            if what_refused:
                bad((*path, "what"), f"the {spec.mesh} mesh cannot rotate what: {fault.what}: {what_refused}")
            for k, name in enumerate(fault.services or []):
                service((*path, "target", k) if isinstance(fault.target, list) and len(fault.target) > 1
                        else (*path, "target"), name)
            if fault.hold and fault.what != "ca":
                bad((*path, "hold"), "hold: holds the stages of a root rotation; a leaf rotation has one stage: "
                                     "remove hold:, or write what: ca")
            elif fault.hold and caps is not None and (hold_refused := caps.refused.get("cert-rotation.hold")):
                bad((*path, "hold"), f"the {spec.mesh} mesh cannot hold a root rotation's stages: {hold_refused}")
            opens = min(settle_s, fault_phase_s / 2)  # where the runner opens the window (and rotates without at:)
            if fault.at is not None and fault.at < opens:
                bad((*path, "at"), f"at: {format_duration(fault.at)} falls in the fault phase's settle time "
                                   f"({format_duration(opens)}), which no window reads, so the swap would go unseen: "
                                   f"write at: {format_duration(opens)} or later, or leave at: out")
                return
            at = fault.at if fault.at is not None else opens
            busy = at + (2 * fault.hold if fault.what == "ca" else 0.0)
            # After the last stage the window must still see traffic use the new certificates for a while:
            # a settle's worth (at least 1s).
            after = max(settle_s, 1.0)
            if busy + after > fault_phase_s:
                field_name = "hold" if fault.hold and fault.what == "ca" else "at"
                bad((*path, field_name), f"the rotation would run until {busy:g}s into a fault phase of "
                                         f"{fault_phase_s:g}s (its shortest length), leaving less than "
                                         f"{after:g}s of the window to show traffic on the new certificates: make "
                                         "at: (and the two holds of a root rotation) end earlier, or lengthen "
                                         "phases.fault")
            return
        if isinstance(fault, TrafficShift):
            if service((*path, "service"), fault.service):
                for k, step in enumerate(fault.steps):
                    for version in step.split:
                        if version not in services[fault.service].versions:
                            bad((*path, "steps", k, "split"), f"{fault.service} has no version '{version}'; "
                                f"versions are: {', '.join(services[fault.service].versions)}")
            return
        if isinstance(fault, NetLatency | NetBandwidth | NetReset):
            edge((*path, "edge"), fault.edge.from_, fault.edge.to)
        elif isinstance(fault, Partition):
            known = [service((*path, side), name) for side, names in (("from", fault.from_), ("to", fault.to))
                     for name in names]
            if all(known) and not any((a in fault.from_ and b in fault.to) or (a in fault.to and b in fault.from_)
                                      for a, b in edges):
                bad((*path, "to"), f"no service of {fault.from_} calls one of {fault.to} or the other way, so "
                                   "the partition would cut nothing; name groups that call each other")
            overlap = sorted(set(fault.from_) & set(fault.to))
            if overlap:
                bad((*path, "to"), f"{', '.join(overlap)} is on both sides of the partition; put each service "
                                   "on one side")
            mode_refused = caps.refused.get(f"partition.mode={fault.mode}") if caps else None
            if mode_refused:
                bad((*path, "mode"), f"the {spec.mesh} mesh cannot partition with mode: {fault.mode}: {mode_refused}")
            if fault.via == "network":
                option = "partition.via=network"
                if caps is None or option not in caps.fault_options:
                    reason = ((caps.refused if caps else {}).get(option)
                              or "it has no network to disconnect instances from")
                    bad((*path, "via"), f"the {spec.mesh} mesh cannot partition via: network: {reason}; use via: proxy")
                if fault.mode != "blackhole":
                    bad((*path, "mode"), "a disconnected instance cannot refuse connections (its address is gone: "
                                         "callers' connects time out); write mode: blackhole, or via: proxy for reject")
                if spec.gateway.service in fault.from_:
                    bad((*path, "from"), f"the gateway calls {spec.gateway.service}: disconnecting it would cut where "
                                         "the load enters, not a partition; use via: proxy")
                peers = {b for a, b in edges if a in fault.from_} | {a for a, b in edges if b in fault.from_}
                left = sorted(peers - set(fault.to) - set(fault.from_))
                if left:
                    bad((*path, "to"), f"via: network disconnects {', '.join(fault.from_)} from every peer, and "
                                       f"{', '.join(left)} is not in to: add it to to:, or use via: proxy to cut "
                                       "only the edges between the groups")
        elif isinstance(fault, Kill | Pause):
            target((*path, "target"), fault.target)
            if fault.target.service in services and (fault.target.version is None or fault.target.version in
                                                     services[fault.target.service].versions):
                have = instances(path, fault.target)
                if fault.count is not None and fault.count > have:
                    bad((*path, "count"), f"{fault.target} has {have} instance(s); write count: {have} or fewer")
                elif fault.count is not None and 100 * fault.count / have > spec.safety.max_fault_percent:
                    bad((*path, "count"), f"{fault.count} of {have} instance(s) of {fault.target} is "
                                          f"{100 * fault.count / have:g}%, above safety.max_fault_percent "
                                          f"{spec.safety.max_fault_percent:g} of {env.metadata.name}")
                if fault.percent is not None and fault.percent > spec.safety.max_fault_percent:
                    bad((*path, "percent"), f"{fault.percent:g}% exceeds safety.max_fault_percent "
                                            f"{spec.safety.max_fault_percent:g} of {env.metadata.name}")

    if kube_scope:
        problems += kube_scope_problems(env, env_pos, current_kube_context())
    caps = capabilities_of(spec.mesh, env)
    if caps is None:
        problems.append(env_pos.problem(("spec", "mesh"), f"mesh '{spec.mesh}' has no driver in this version; "
                                        f"drivers: {', '.join(sorted(DRIVERS))}"))
        caps = Capabilities(spec.mesh, frozenset())  # report the suite's own problems too, not only this one
    refuse_env = environment_refusals(spec.mesh)
    if refuse_env is not None:
        problems += [env_pos.problem(("spec", *where), why) for where, why in refuse_env(env)]
    refuse_policy = policy_refusals(spec.mesh)
    refuse_overrides = override_refusals(spec.mesh)
    if refuse_policy is not None:
        for si, svc in enumerate(spec.services):
            for ci, call in enumerate(svc.calls):
                for field_path, held_not in refuse_policy(call):
                    problems.append(env_pos.problem(("spec", "services", si, "calls", ci, *field_path),
                                                    f"the {spec.mesh} mesh cannot hold this: {held_not}"))
    for i, exp in enumerate(loaded.model.spec.experiments):
        base: tuple[str | int, ...] = ("spec", "experiments", i)
        resolved = resolve_experiment(loaded.model, exp)
        fault_phase_s = next(p.min_s for p in resolved.phases if p.name == "fault")
        workers = resolved.workers + resolved.remote_workers
        if workers > resolved.users:
            bad(_load_field(exp.load, base, "workers" if resolved.workers else "remote_workers"),
                f"{resolved.users} users cannot keep {workers} Locust workers busy (each worker gets whole "
                f"users): give load.users {workers} or more, or fewer workers")
        if resolved.remote_workers and not resolved.master_port:
            bad(_load_field(exp.load, base, "remote_workers"),
                "remote workers connect to the master at a port fixed in advance: write load.master_port, e.g. "
                "master_port: 5557")
        kinds = [f.kind for f in exp.faults]
        if "cert-rotation" in kinds and "cert-untrusted" in kinds:
            bad((*base, "faults", kinds.index("cert-untrusted"), "kind"),
                "cert-untrusted and cert-rotation in one experiment: the rotation waits for every sidecar of its "
                "targets to serve its new leaf, which a sidecar given an untrusted leaf never does; put them in "
                "two experiments")
        if refuse_overrides is not None:
            for j, field_path, held_not in refuse_overrides(exp.policy):
                bad((*base, "policy", j, *field_path), f"the {spec.mesh} mesh cannot hold this: {held_not}")
        for j, change in enumerate(exp.policy):
            edge((*base, "policy", j), change.from_, change.to)
            if refuse_policy is not None:
                fields = change.model_dump(exclude_none=True, exclude={"from_", "to"})
                for field_path, held_not in refuse_policy(EdgePolicy.model_validate(fields)):
                    bad((*base, "policy", j, *field_path), f"the {spec.mesh} mesh cannot hold this: {held_not}")
            for name in sorted(change.model_dump(exclude_none=True, exclude={"from_", "to"})):
                if name not in caps.policy_fields:
                    reason = (caps.refused.get(f"policy.{name}")
                              or f"it can set: {', '.join(sorted(caps.policy_fields))}")
                    bad((*base, "policy", j, name), f"the {caps.mesh} mesh driver cannot set {name} for an "
                                                    f"experiment: {reason}")
        for j, fault in enumerate(exp.faults):
            fpath = (*base, "faults", j)
            if fault.kind not in IMPLEMENTED:
                bad((*fpath, "kind"), f"fault kind '{fault.kind}' is not implemented by this version; "
                                      f"implemented: {', '.join(sorted(IMPLEMENTED))}")
                continue
            refusal = caps.refusal(fault.kind)
            if refusal is not None:
                bad((*fpath, "kind"), f"the {caps.mesh} mesh cannot do {fault.kind}: {refusal.reason}")
                continue
            if not isinstance(fault, HttpAbort | HttpDelay):
                other_fault(fpath, fault, fault_phase_s, resolved.settle_s)
                continue
            if fault.at not in caps.http_placements:
                why = caps.refused.get(f"{fault.kind}.at={fault.at}")
                bad((*fpath, "at"), f"the {caps.mesh} mesh cannot place {fault.kind} at the {fault.at}"
                                    + (f" ({why})" if why else "")
                                    + f"; it can at: {', '.join(sorted(caps.http_placements))}")
            target((*fpath, "target"), fault.target)
            if fault.percent > spec.safety.max_fault_percent:
                bad((*fpath, "percent"), f"{fault.percent:g}% exceeds safety.max_fault_percent "
                                         f"{spec.safety.max_fault_percent:g} of {env.metadata.name}")
            if fault.headers:
                bad((*fpath, "headers"), "header-matched HTTP faults are not supported yet; remove headers:")
            if fault.at == "caller" and fault.target.version:
                bad((*fpath, "at"), "at: caller cannot be narrowed to one version yet; drop target.version")
            if isinstance(fault, HttpDelay) and spec.declares_admission and "plaintext" in exp.refused_peers:
                bad((*fpath, "kind"), "http-delay in a refusal test under linkerd.authorization: declared: every "
                                      "service then admits only its declared callers, and the delay's fault backend "
                                      "is outside the mesh, so every request it forwards would be refused with a "
                                      "403. Test the delay in an experiment without rejects: [plaintext]")
        signalled = [(j, f) for j, f in enumerate(exp.faults) if isinstance(f, Kill | Pause)]
        for n, (j, fault) in enumerate(signalled):
            for _, other in signalled[:n]:
                a, b = fault.target, other.target
                if a.service == b.service and (a.version is None or b.version is None or a.version == b.version):
                    bad((*base, "faults", j, "target"),
                        f"{other.kind} already stops instances of {other.target}; two kill/pause faults on the "
                        "same instances would undo each other: give them different targets, or keep one")
                    break
        shifts = [(j, f) for j, f in enumerate(exp.faults) if isinstance(f, TrafficShift)]
        for j, _ in shifts[1:]:
            bad((*base, "faults", j, "kind"), "one traffic-shift per experiment: the fault phase follows its steps; "
                                              "put the other shift in an experiment of its own")

        def step(path: tuple[str | int, ...], number: int | None,
                 steps: int | None = len(shifts[0][1].steps) if shifts else None) -> None:
            if number is None:
                return
            if steps is None:
                bad((*path, "step"), "step: reads a step of a traffic-shift, and this experiment has none; "
                                     "add a traffic-shift fault, or use window:")
            elif number > steps:
                bad((*path, "step"), f"the traffic-shift has {steps} step(s); write step: {steps} or less")

        for j, exp_item in enumerate(exp.expect):
            epath = (*base, "expect", j)
            if not isinstance(exp_item, TrafficSplitExpectation):
                step(epath, getattr(exp_item, "step", None))
            if exp_item.kind not in SUPPORTED_KINDS:
                bad((*epath, "kind"), f"expectation kind '{exp_item.kind}' is not supported yet; "
                                      f"supported: {', '.join(sorted(SUPPORTED_KINDS))}")
                continue
            missing = sorted(evidence_needed(exp_item) - caps.evidence)
            if missing:
                bad((*epath, "kind"), f"the {caps.mesh} mesh's metrics cannot show what {exp_item.kind} needs "
                                      f"({', '.join(missing)}); it shows: {', '.join(sorted(caps.evidence))}")
                continue
            if isinstance(exp_item, RetriesExpectation | TimeoutExpectation | CircuitBreakerExpectation
                          | OutlierEjectionExpectation):
                edge((*epath, "route"), exp_item.route.from_, exp_item.route.to)
            if isinstance(exp_item, OutlierEjectionExpectation):
                target((*epath, "instance"), exp_item.instance)
                if exp_item.instance.service != exp_item.route.to:
                    bad((*epath, "instance"), f"{exp_item.instance} is not called on {exp_item.route}: name a "
                                              f"version of {exp_item.route.to}")
            elif isinstance(exp_item, TrafficSplitExpectation):
                if service((*epath, "service"), exp_item.service):
                    for version in exp_item.split:
                        if version not in services[exp_item.service].versions:
                            bad((*epath, "split"), f"{exp_item.service} has no version '{version}'")
                step(epath, exp_item.step)
            elif isinstance(exp_item, Slo):
                scope((*epath, "scope"), exp_item.scope)
            elif isinstance(exp_item, PromqlExpectation):
                if spec.metrics.source != "prometheus":
                    bad((*epath, "kind"), f"promql asks Prometheus, and {env.metadata.name}'s metrics are "
                                          f"source: {spec.metrics.source}; set metrics: {{source: prometheus}} in "
                                          f"{env_file}, or judge the signal with an slo")
                if exp_item.min is None and exp_item.max is None:
                    bad((*epath, "query"), "promql needs a bound: write min: or max: (or both)")
                elif not exp_item.query.strip():
                    bad((*epath, "query"), 'the query is empty: write a PromQL expression, e.g. '
                                           'query: sum(rate(envoy_cluster_upstream_rq_total[{{ interval }}]))')
            elif isinstance(exp_item, MtlsExpectation) and exp_item.rotated is not None and \
                    window_of(exp_item) != "fault":
                bad((*epath, "rotated"), f"rotated: compares the certificates before the fault phase with those at "
                                         f"the end of its window; window {window_of(exp_item)} shows no rotation "
                                         "(rotations are undone as the phase ends): write window: fault")
            elif isinstance(exp_item, MtlsExpectation) and exp_item.rotated and \
                    not any(isinstance(f, CertRotation) for f in exp.faults):
                bad((*epath, "rotated"), "rotated: true reads the targets of this experiment's cert-rotation, and it "
                                         "has none: add a cert-rotation fault, or remove rotated:")
            elif isinstance(exp_item, CanaryExpectation) and service((*epath, "service"), exp_item.service):
                for field_name in ("baseline", "canary"):
                    version = getattr(exp_item, field_name)
                    if version not in services[exp_item.service].versions:
                        bad((*epath, field_name), f"{exp_item.service} has no version '{version}'; versions are: "
                                                  f"{', '.join(services[exp_item.service].versions)}")
        for j, cond in enumerate(exp.abort_if):
            scope((*base, "abort_if", j, "scope"), cond.scope)
            if cond.scope != "client" and spec.metrics.source == "prometheus":
                # The watch reads the last second of sidecar counters; through Prometheus a second holds
                # no two samples of a node, so the condition could never fire: refused, not ignored.
                bad((*base, "abort_if", j, "scope"), f"abort_if at scope {cond.scope} reads sidecar counters "
                                                     "each second, which Prometheus samples too seldom to "
                                                     "show; watch scope: client, or use metrics: {source: "
                                                     "envoy}")
    return problems
