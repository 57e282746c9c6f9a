"""The suite and environment reference (Markdown) and the JSON Schema files, generated from the schema.

Why generated: the reference must say exactly what the loader accepts, and a hand-written page drifts
the first time a field is added. So the structure of every page (which documents, which sections,
which fields, their types, bounds, enums and defaults) is read from ``harness.model.schema.schemas()``,
the same JSON Schema that editors use for completion; only prose lives here. CI runs
``python -m harness.model.reference --check`` (and ``tests/unit/docs/test_reference.py``) so a change to
the models that is not followed by regenerating the docs fails the build.

Where the prose comes from: the models' docstrings and ``Field(description=...)`` are written for
developers and cover only some fields, so the user-facing text below (``MODEL_DOCS``, ``FIELD_DOCS``,
``KIND_DOCS``) comes first and the schema's own ``description`` fills in for anything not covered here.
A field the schema gains and nobody describes still appears in the tables, with an empty description.

Defaults: pydantic leaves values built by ``default_factory`` (``versions``, ``behaviour``, ``metrics``,
``retries.on``, ...) out of the schema, so those are read from the models and shown too; a user must
not have to read Python to learn that an absent ``versions`` means ``{v1: {replicas: 1}}``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from harness.model.common import NAME_PATTERN
from harness.model.durations import DURATION_PATTERN, format_duration
from harness.model.schema import schemas

__all__ = [
    "DOCUMENTS",
    "generated_files",
    "main",
    "render_reference",
    "schema_text",
    "stale_files",
    "write_generated",
]

JsonDict = dict[str, Any]

DOCUMENTS = ("suite", "environment")
"""The two documents of SUITE-FORMAT, in the order the reference presents them."""

_TITLES = {"suite": "Suite", "environment": "Environment"}

_GROUPS = {"faults": ("fault", "Fault kinds"), "expect": ("expectation", "Expectation kinds")}
"""Discriminated unions by the property that holds them: anchor prefix of their kinds, section title."""

# --------------------------------------------------------------------------------------------- prose
_INTROS = {
    "suite": (
        "A Suite is a list of experiments: load through the gateway, faults during the `fault` phase, "
        "and expectations judged on the evidence of a phase. See [suites](../concepts/suites.md), "
        "[faults](../concepts/faults.md) and [expectations](../concepts/expectations.md) for what they do."
    ),
    "environment": (
        "An Environment describes a mesh: its services, their versions and replicas, who calls whom, and "
        "the policy the mesh declares on each edge. See [environments](../concepts/environment.md) and "
        "[the local mesh](../concepts/local-mesh.md)."
    ),
}

MODEL_DOCS: dict[str, str] = {
    "Suite": "The document root. Put `# yaml-language-server: $schema=../docs/schema/suite.schema.json` on "
             "the first line for completion in editors (see [editor support](../editor.md)).",
    "Environment": "The document root. Put `# yaml-language-server: $schema=../docs/schema/environment.schema.json` "
                   "on the first line for completion in editors (see [editor support](../editor.md)).",
    "Metadata": "Names the document.",
    "SuiteSpec": "The body of a Suite.",
    "Defaults": "Settings every experiment of the suite inherits; an experiment's own value wins.",
    "LoadSettings": (
        "The load Locust sends to the gateway: `users` concurrent users sharing a constant total `rate` of "
        "GET requests per second. Merged field by field: an experiment's `load` refines the suite's "
        "`defaults.load`, which refines the built-in `{users: 10, rate: 100, path: /}`. A response with "
        "status 200–399 counts as a success at the client; 4xx, 5xx and no response count as failures."
    ),
    "Phases": (
        "How long each phase lasts: a duration, or `{min, max}` for an [adaptive phase](#adaptivephase). "
        "Merged field by field with `defaults.phases`; the built-in lengths are baseline `5s`, fault `10s`, "
        "recovery `5s`."
    ),
    "AdaptivePhase": (
        "A phase that runs at least `min`, then ends as soon as every expectation judged on it has a "
        "settled verdict (pass or fail, not inconclusive), or at `max`. Verdicts are re-checked about once "
        "a second."
    ),
    "Experiment": (
        "One fault (or none) under load, with its expectations. Phases run in order `baseline` → `fault` → "
        "`recovery`; `policy` is applied before the baseline and restored after the recovery."
    ),
    "PolicyChange": (
        "A temporary policy for one edge, for one experiment: journalled, applied before the baseline, "
        "restored after the recovery. Only the blocks given replace the edge's policy, each as a whole "
        "(a `circuit_breaker` here replaces the declared one; its absent thresholds take the mesh defaults); "
        "the others stay as the environment declares them."
    ),
    "Retries": (
        "A retry policy. `attempts` counts retries, not tries: a request makes at most 1 + `attempts` "
        "upstream attempts. Without it, an edge of the local mesh has no retries."
    ),
    "CircuitBreaker": (
        "Circuit-breaker thresholds that each calling sidecar enforces on its own, towards each version of "
        "the callee (one Envoy cluster per version). Absent fields are 1024 on the local mesh, never "
        "Envoy's default of 3 concurrent retries."
    ),
    "OutlierDetection": (
        "Passive health checking: after `consecutive_5xx` failures an instance is ejected from the callee's "
        "load balancing. Without this block there is no outlier detection; fields left out take Envoy's "
        "defaults (5, `10s`, `30s`, 10%)."
    ),
    "Target": "A service, optionally narrowed to one of its versions (`{service: reviews, version: v2}`).",
    "Edge": "A caller → callee edge of the environment (`{from: reviews, to: ratings}`).",
    "Route": "A caller → callee edge of the environment (`{from: productpage, to: reviews}`).",
    "ShiftStep": "One step of a traffic shift: the split to hold, and for how long.",
    "AbortCondition": (
        "A safety stop, checked from the start of the fault phase on the client requests of the trailing "
        "second: once the condition has held for `for`, every fault is removed at once, the experiment "
        "skips to recovery and is marked `aborted`."
    ),
    "EnvironmentSpec": "The body of an Environment.",
    "Gateway": "Where load enters the mesh: a separate gateway Envoy on 127.0.0.1 that routes to `service`.",
    "Service": (
        "A service of the mesh. Each request it receives makes it call each of its `calls` in order; it "
        "answers 200 with headers `x-harness-version` and `x-harness-trace`, or 502 when a required call "
        "failed."
    ),
    "VersionSpec": "One version of a service.",
    "Behaviour": (
        "The demo service's own baseline behaviour, before any fault: it waits `latency`, then with "
        "probability `error_rate` answers `error_status` without calling anything."
    ),
    "Call": (
        "An outbound call a service makes for every inbound request, with the mesh policy of that edge. "
        "Absent policy fields take the mesh's defaults, which `mesh-harness plan` prints."
    ),
    "MetricsConfig": "Where counters come from.",
    "Safety": "Limits the harness enforces before it changes anything.",
}

KIND_DOCS: dict[str, str] = {
    "http-abort": (
        "The mesh answers `status` instead of forwarding, for `percent` of the requests to `target`. "
        "It acts where the target receives traffic (its inbound sidecar), so every caller's retries, "
        "timeouts and breakers meet a failing service; `at: caller` moves it to the callers' outbound side, "
        "where Istio's VirtualService faults act."
    ),
    "http-delay": (
        "The mesh holds `percent` of the requests to `target` for `delay` before forwarding them. Where it "
        "acts: as for `http-abort`."
    ),
    "net-latency": "TCP bytes on the edge are held back by `latency` (± `jitter`), as Toxiproxy's `latency` toxic.",
    "net-bandwidth": "TCP throughput on the edge is capped at `rate_kbps`.",
    "net-reset": "Connections on the edge are reset, `after` the given time.",
    "partition": (
        "No connection between the `from` services and the `to` services succeeds: `blackhole` hangs, "
        "`reject` refuses."
    ),
    "kill": (
        "Instances of `target` (`count` of them, or `percent`) are stopped with SIGKILL and, with `restart`, "
        "started again when the fault ends."
    ),
    "pause": "Instances of `target` (`count` or `percent`) are frozen (SIGSTOP) and thawed when the fault ends.",
    "traffic-shift": "The split of `service` moves through `steps` during the fault phase; steps are numbered from 1.",
    "cert-rotation": (
        "Certificates are replaced while traffic flows; `what: ca` rotates the root with an overlap bundle."
    ),
    "cert-untrusted": "`target` is given a leaf certificate signed by a CA nobody trusts.",
    "slo": (
        "A success rate, error rate, latency quantile or throughput meets `min` / `max` at the suite's "
        "confidence: pass when the whole confidence interval meets the bound, fail when none of it does, "
        "inconclusive otherwise. Proportions use the Wilson interval, quantiles a distribution-free "
        "order-statistic interval, throughput a Poisson interval."
    ),
    "retries": (
        "The edge behaves as its retry policy predicts: with per-attempt failure probability p (measured "
        "as failed attempts / attempts on the caller's sidecars) and n retries in force, a request "
        "succeeds with probability 1−p^(n+1) and makes (1−p^(n+1))/(1−p) attempts on average; and no "
        "request reached the callee more than 1+n times."
    ),
    "circuit-breaker": (
        "Overflow was (or was not) observed on the edge, overflowed requests were answered fast by the "
        "mesh, and the upstream never saw more concurrent requests than `max_concurrency` × the number of "
        "calling instances."
    ),
    "outlier-ejection": "`instance` was (or was not) ejected, and while ejected received no traffic.",
    "timeout": "Requests on `route` that hit the timeout ended at `at` (±10% or 20ms) with 504.",
    "traffic-split": (
        "The share of requests each version of `service` answered (read from every response's "
        "`x-harness-trace`) agrees with `split`: a chi-square goodness-of-fit test at the suite's "
        "confidence, or with `tolerance` an equivalence test (every version's interval within ± tolerance "
        "percentage points)."
    ),
    "canary": (
        "The canary version is not worse than the baseline version (Mann-Whitney U on latency, "
        "two-proportion test on errors)."
    ),
    "mtls": "No request failed, new certificates were served, and the listed bad peers were refused.",
    "promql": "(Prometheus sources only) the instant value of `query` at the end of `window` meets the bound.",
}

_WINDOW = ("Whose evidence is judged: `baseline`, `fault`, `recovery`, or `all` (from the start of the "
           "baseline window to the end of the recovery window).")

FIELD_DOCS: dict[tuple[str, str], str] = {
    ("*", "apiVersion"): "Always `harness/v1`.",
    ("Suite", "kind"): "Always `Suite`.",
    ("Environment", "kind"): "Always `Environment`.",
    ("*", "kind"): "Selects the kind; the other fields depend on it.",
    ("*", "id"): "An optional label of your own, shown in results.",
    ("*", "window"): _WINDOW,
    ("*", "metadata"): "The document's name (and labels).",
    ("Metadata", "name"): "The name, used in results and plans.",
    ("Metadata", "labels"): "Free-form labels for your own use; not interpreted by this version.",
    ("Suite", "spec"): "The suite's body.",
    ("Environment", "spec"): "The environment's body.",
    # ---------------------------------------------------------------------------- suite
    ("SuiteSpec", "environment"): (
        "Name or path of the Environment. A name is looked up beside the suite file, then in "
        "`environments/NAME.yaml`; `--env` on the command line overrides it."
    ),
    ("SuiteSpec", "defaults"): "Settings every experiment inherits.",
    ("SuiteSpec", "inconclusive"): (
        "`pass` to let an inconclusive verdict pass; by default it counts as a failure."
    ),
    ("SuiteSpec", "experiments"): "The experiments, run in order. Names must be unique within the suite.",
    ("Defaults", "load"): "Load for every experiment.",
    ("Defaults", "phases"): "Phase lengths for every experiment.",
    ("Defaults", "confidence"): "Confidence level of every interval and test.",
    ("Defaults", "settle"): (
        "Evidence from the first `settle` of each phase is left out of that phase's window, so a window "
        "shows the state the phase set up, not the transition into it. Capped at half the phase's `min`."
    ),
    ("Defaults", "inconclusive"): "`pass` to let inconclusive verdicts pass.",
    ("LoadSettings", "users"): "Concurrent Locust users (built-in default 10; the load generator caps it at 1000).",
    ("LoadSettings", "rate"): (
        "Total requests per second, shared by the users (built-in default 100). Constant as long as "
        "latency stays below users / rate seconds."
    ),
    ("LoadSettings", "path"): "Request path at the gateway (built-in default `/`).",
    ("LoadSettings", "headers"): "Extra request headers sent with every request.",
    ("Phases", "baseline"): "Load, no fault (built-in default `5s`).",
    ("Phases", "fault"): "Faults applied at its start and removed at its end (built-in default `10s`).",
    ("Phases", "recovery"): "Load, no fault, after the faults are removed (built-in default `5s`).",
    ("AdaptivePhase", "min"): "The phase runs at least this long.",
    ("AdaptivePhase", "max"): "The phase ends at the latest after this long; not shorter than `min`.",
    ("Experiment", "name"): "The experiment's name; in pytest the item is `FILE::NAME`.",
    ("Experiment", "description"): "One line saying what the experiment shows.",
    ("Experiment", "tags"): (
        "Tags; `-k` matches them, and in pytest each becomes a marker (`-m TAG`, with `-` written as `_`)."
    ),
    ("Experiment", "policy"): "Temporary edge policies for this experiment.",
    ("Experiment", "load"): "Load for this experiment, merged over `defaults.load`.",
    ("Experiment", "phases"): "Phase lengths, merged over `defaults.phases`.",
    ("Experiment", "settle"): "Overrides `defaults.settle`.",
    ("Experiment", "confidence"): "Overrides `defaults.confidence`.",
    ("Experiment", "faults"): "Faults applied during the fault phase.",
    ("Experiment", "expect"): "Expectations; every one has a verdict.",
    ("Experiment", "abort_if"): "Safety stops, checked from the start of the fault phase.",
    ("Experiment", "inconclusive"): "Overrides the suite's `inconclusive`.",
    ("PolicyChange", "from"): "The calling service.",
    ("PolicyChange", "to"): "The called service.",
    ("PolicyChange", "retries"): "Retry policy for the experiment (`{attempts: 0}` switches retries off).",
    ("PolicyChange", "timeout"): "Route timeout for the experiment.",
    ("PolicyChange", "circuit_breaker"): "Circuit-breaker thresholds for the experiment.",
    ("PolicyChange", "outlier_detection"): "Outlier detection for the experiment.",
    ("Retries", "attempts"): "Retries after the first try (0 switches retries off).",
    ("Retries", "on"): (
        "Envoy `retry_on` conditions (`5xx`, `gateway-error`, `reset`, `connect-failure`, `retriable-4xx`, "
        "`refused-stream`, ...) or status codes such as `503`."
    ),
    ("Retries", "per_try_timeout"): (
        "Timeout of each attempt; without it, each attempt may use the whole route timeout."
    ),
    ("CircuitBreaker", "max_connections"): "Connections to each callee version (local default 1024).",
    ("CircuitBreaker", "max_pending"): "Requests waiting for a connection (local default 1024).",
    ("CircuitBreaker", "max_requests"): "Concurrent requests (local default 1024).",
    ("CircuitBreaker", "max_retries"): "Concurrent retries (local default 1024, never Envoy's 3).",
    ("OutlierDetection", "consecutive_5xx"): "Consecutive 5xx answers that eject an instance (Envoy default 5).",
    ("OutlierDetection", "interval"): "How often ejections are evaluated (Envoy default `10s`).",
    ("OutlierDetection", "base_ejection_time"): (
        "How long an instance stays ejected, the first time (Envoy default `30s`)."
    ),
    ("OutlierDetection", "max_ejection_percent"): (
        "Most instances of a cluster that may be ejected at once, in percent (Envoy default 10)."
    ),
    ("Target", "service"): "A service of the environment.",
    ("Target", "version"): "One of its versions; all versions when absent.",
    ("Edge", "from"): "The calling service.",
    ("Edge", "to"): "The called service.",
    ("Route", "from"): "The calling service (`gateway` names the gateway Envoy).",
    ("Route", "to"): "The called service.",
    ("ShiftStep", "split"): "Version → percentage; must sum to 100.",
    ("ShiftStep", "hold"): "How long the step holds.",
    # ---------------------------------------------------------------------------- faults
    ("HttpAbort", "target"): "The service (and optionally version) whose requests are aborted.",
    ("HttpAbort", "status"): "HTTP status the mesh answers with.",
    ("HttpAbort", "percent"): (
        "Share of requests aborted (0–100; fractions such as 0.5 are exact). Refused above the "
        "environment's `safety.max_fault_percent`."
    ),
    ("HttpAbort", "headers"): "Only requests with these headers (not implemented yet: refused).",
    ("HttpAbort", "at"): (
        "`target`: the target's inbound sidecar(s); `caller`: the outbound side of every caller of the "
        "target (cannot be combined with `target.version` yet)."
    ),
    ("HttpDelay", "target"): "The service (and optionally version) whose requests are delayed.",
    ("HttpDelay", "delay"): "How long each affected request is held.",
    ("HttpDelay", "percent"): (
        "Share of requests delayed (0–100). Refused above the environment's `safety.max_fault_percent`."
    ),
    ("HttpDelay", "headers"): "Only requests with these headers (not implemented yet: refused).",
    ("HttpDelay", "at"): "`target` (inbound, default) or `caller` (outbound of every caller), as for `http-abort`.",
    ("NetLatency", "edge"): "The edge whose TCP traffic is delayed.",
    ("NetLatency", "latency"): "Added latency.",
    ("NetLatency", "jitter"): "Random variation of the latency.",
    ("NetBandwidth", "edge"): "The edge whose throughput is capped.",
    ("NetBandwidth", "rate_kbps"): "Cap in kilobytes per second.",
    ("NetReset", "edge"): "The edge whose connections are reset.",
    ("NetReset", "after"): "Reset connections after this long.",
    ("Partition", "from"): "Services on one side (a name or a list).",
    ("Partition", "to"): "Services on the other side (a name or a list).",
    ("Partition", "mode"): "`blackhole`: connections hang; `reject`: connections are refused.",
    ("Kill", "target"): "The service (and optionally version) whose instances are killed.",
    ("Kill", "count"): "How many instances.",
    ("Kill", "percent"): "Or: what share of the instances.",
    ("Kill", "restart"): "Start them again when the fault ends.",
    ("Pause", "target"): "The service (and optionally version) whose instances are frozen.",
    ("Pause", "count"): "How many instances.",
    ("Pause", "percent"): "Or: what share of the instances.",
    ("TrafficShift", "service"): "The service whose split moves.",
    ("TrafficShift", "steps"): "The splits to move through, in order; expectations name them with `step: N` (from 1).",
    ("CertRotation", "target"): "Services whose certificates rotate (a name, a list, or `all`).",
    ("CertRotation", "what"): "`leaf` certificates, or the `ca` (with an overlap bundle).",
    ("CertRotation", "at"): "Offset into the fault phase.",
    ("CertUntrusted", "target"): "The service given an untrusted leaf.",
    # ---------------------------------------------------------------------------- expectations
    ("Slo", "signal"): (
        "`success_rate` and `error_rate` (fractions 0–1), `latency` (needs `quantile`), `throughput` (req/s)."
    ),
    ("Slo", "quantile"): "For `latency`: the quantile, e.g. 0.99.",
    ("Slo", "scope"): (
        "`client` (every request Locust made), `service:NAME` (requests the service's inbound sidecars "
        "answered) or `edge:A->B` (requests A's sidecars sent to B). Latency at a sidecar comes from "
        "Envoy's histogram bins."
    ),
    ("Slo", "min"): "Lower bound: a number, or for latency a duration such as `100ms`.",
    ("Slo", "max"): "Upper bound: a number, or for latency a duration such as `250ms`.",
    ("RetriesExpectation", "route"): "The edge whose retry policy is checked.",
    ("RetriesExpectation", "model"): "`oracle`: the analytical retry model.",
    ("RetriesExpectation", "max_amplification"): "Fail when attempts per request exceed this.",
    ("CircuitBreakerExpectation", "route"): "The edge whose breaker is checked.",
    ("CircuitBreakerExpectation", "opens"): "Whether overflow must (true) or must not (false) be observed.",
    ("CircuitBreakerExpectation", "max_concurrency"): "Concurrency limit per calling instance.",
    ("OutlierEjectionExpectation", "route"): "The edge whose outlier detection is checked.",
    ("OutlierEjectionExpectation", "instance"): "The service version expected to be (or not be) ejected.",
    ("OutlierEjectionExpectation", "ejected"): "Whether it must (true) or must not (false) be ejected.",
    ("OutlierEjectionExpectation", "within"): "Ejected within this many requests.",
    ("TimeoutExpectation", "route"): "The edge whose timeout is checked.",
    ("TimeoutExpectation", "at"): "When timed-out requests must end (±10% or 20ms).",
    ("TrafficSplitExpectation", "service"): "The service whose split is checked.",
    ("TrafficSplitExpectation", "window"): _WINDOW + " Give `window` or `step`; without either, `fault`.",
    ("TrafficSplitExpectation", "step"): "Judge step N (from 1) of a `traffic-shift` (not implemented yet: refused).",
    ("TrafficSplitExpectation", "split"): "Version → expected percentage; must sum to 100.",
    ("TrafficSplitExpectation", "tolerance"): (
        "Percentage points. With it, the test is equivalence: pass only when every version's share "
        "interval lies within ± tolerance of its declared share."
    ),
    ("CanaryExpectation", "service"): "The service with the two versions.",
    ("CanaryExpectation", "baseline"): "The version compared against.",
    ("CanaryExpectation", "canary"): "The version under test.",
    ("CanaryExpectation", "signals"): "Which signals to compare.",
    ("MtlsExpectation", "failed_requests"): "Most failed requests allowed (usually 0).",
    ("MtlsExpectation", "rotated"): "New certificates must have been served.",
    ("MtlsExpectation", "rejects"): "Bad peers that must be refused.",
    ("PromqlExpectation", "query"): "A PromQL query.",
    ("PromqlExpectation", "min"): "Lower bound.",
    ("PromqlExpectation", "max"): "Upper bound.",
    ("AbortCondition", "signal"): "What to watch.",
    ("AbortCondition", "scope"): "`client` (the only scope `abort_if` reads in this version).",
    ("AbortCondition", "quantile"): "For `latency`: the quantile (default 0.99).",
    ("AbortCondition", "below"): "Abort when the signal is below this (give `below` or `above`).",
    ("AbortCondition", "above"): "Abort when the signal is above this; for latency a duration such as `500ms`.",
    ("AbortCondition", "for"): "How long the condition must hold.",
    # ---------------------------------------------------------------------------- environment
    ("EnvironmentSpec", "mesh"): (
        "Which mesh drives it. Only `local` is implemented by this version; the others are refused "
        "(exit 2)."
    ),
    ("EnvironmentSpec", "gateway"): "Where load enters.",
    ("EnvironmentSpec", "services"): "The services. Names are unique and calls must not form a cycle.",
    ("EnvironmentSpec", "mtls"): (
        "`strict`: sidecars accept only mutual TLS; `permissive`: TLS or plaintext; `off`: plaintext."
    ),
    ("EnvironmentSpec", "metrics"): "Where counters come from.",
    ("EnvironmentSpec", "safety"): "Limits enforced before anything is changed.",
    ("Gateway", "service"): "The service that receives the load.",
    ("Gateway", "port"): "Port of the gateway on 127.0.0.1; 0 picks a free one.",
    ("Service", "name"): "The service's name.",
    ("Service", "versions"): "Version name → its spec. A bare key (`v2:`) means the defaults.",
    ("Service", "calls"): "Outbound calls made, in order, for every inbound request.",
    ("Service", "split"): (
        "Version → percentage of the traffic to this service, summing to 100; without it, traffic divides "
        "in proportion to replicas."
    ),
    ("Service", "behaviour"): "Baseline behaviour of every version (a version's own `behaviour` wins).",
    ("VersionSpec", "replicas"): "Instances of this version (each an app plus its Envoy sidecar).",
    ("VersionSpec", "behaviour"): "Behaviour of this version only; replaces the service's.",
    ("Behaviour", "latency"): "Time the service takes before calling anything.",
    ("Behaviour", "error_rate"): "Fraction of requests answered with `error_status` (0.05 = 5%).",
    ("Behaviour", "error_status"): "Status of those answers.",
    ("Call", "to"): "The called service.",
    ("Call", "optional"): "A failed optional call does not fail the caller.",
    ("Call", "retries"): "Retry policy of the edge (local default: no retries).",
    ("Call", "timeout"): "Route timeout of the edge, retries included (local default `15s`).",
    ("Call", "circuit_breaker"): "Circuit-breaker thresholds of the edge (local default 1024 each).",
    ("Call", "outlier_detection"): "Outlier detection on the edge (local default: none).",
    ("MetricsConfig", "source"): (
        "`envoy`: scrape every sidecar's admin endpoint. `prometheus` is not implemented by this version "
        "(refused, exit 2)."
    ),
    ("MetricsConfig", "url"): "For `prometheus`: the server to query.",
    ("MetricsConfig", "scrape_interval"): (
        "How often counters are scraped in the background (phase boundaries are scraped on demand)."
    ),
    ("Safety", "max_fault_percent"): "A fault above this percentage is refused before anything is applied (exit 2).",
    ("Safety", "allowed_contexts"): (
        "Kubernetes meshes: the only kube contexts the harness may act on (unused by `local`)."
    ),
    ("Safety", "allowed_namespaces"): (
        "Kubernetes meshes: the only namespaces the harness may act on (unused by `local`)."
    ),
}


# ------------------------------------------------------------------------------------ model defaults
def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """Every pydantic model mentioned in a type annotation (through unions, lists, Annotated...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def factory_defaults() -> dict[str, dict[str, Any]]:
    """``{model name: {field alias: default as JSON}}`` for fields whose default comes from a factory.

    The schema omits these defaults (pydantic never calls a ``default_factory`` to write a schema), yet
    they are part of the contract, so the reference reads them from the models themselves.
    """
    from harness.model.environment import Environment
    from harness.model.suite import Suite

    out: dict[str, dict[str, Any]] = {}
    stack: list[type[BaseModel]] = [Suite, Environment]
    while stack:
        model = stack.pop()
        if model.__name__ in out:
            continue
        entries: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            if info.default_factory is not None and info.annotation is not None:
                value = info.get_default(call_default_factory=True, validated_data={})
                entries[info.alias or name] = TypeAdapter(info.annotation).dump_python(
                    value, mode="json", by_alias=True, exclude_none=True)
            stack.extend(_models_in(info.annotation))
        out[model.__name__] = entries
    return out


def _supported() -> tuple[frozenset[str], frozenset[str]]:
    """Fault and expectation kinds this version can run.

    Read from the runner's own checks rather than restated here, so the reference cannot claim a kind
    works before ``plan`` accepts it. Imported lazily: the model package otherwise knows nothing of
    the runner.
    """
    from harness.assertions import SUPPORTED_KINDS
    from harness.runner.checks import SUPPORTED_FAULTS

    return frozenset(SUPPORTED_FAULTS), frozenset(SUPPORTED_KINDS)


# ------------------------------------------------------------------------------------------ rendering
def _rst_to_md(text: str) -> str:
    """Docstrings use reStructuredText ``literals``; Markdown wants `literals`."""
    return re.sub(r"``([^`]+)``", r"`\1`", " ".join(text.split()))


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


_PLAIN = re.compile(r"^[A-Za-z_./][-A-Za-z0-9_./]*$")
_UNQUOTED = re.compile(r"\d+(\.\d+)?(us|µs|ms|s|m|h)|\d+xx")
"""Durations and ``5xx``: strings YAML reads back as strings although they start with a digit."""
_YAML_WORDS = frozenset({"true", "false", "null", "yes", "no", "on", "off", "~"})


def flow_yaml(value: Any) -> str:
    """A value as a user would write it in YAML flow style: ``{v1: {replicas: 1}}``, ``[5xx]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, str):
        plain = bool(_PLAIN.match(value) or _UNQUOTED.fullmatch(value)) and value not in _YAML_WORDS
        return value if plain else json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {flow_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow_yaml(v) for v in value) + "]"
    return json.dumps(value)


def _is_duration(schema: JsonDict) -> bool:
    return schema.get("type") == "string" and schema.get("pattern") == DURATION_PATTERN


def _alternatives(schema: JsonDict) -> list[JsonDict]:
    """The non-null members of a union (a plain schema is its own only member)."""
    members: list[JsonDict] = schema.get("anyOf") or schema.get("oneOf") or [schema]
    return [s for s in members if s.get("type") != "null"]


def _bounds(schema: JsonDict) -> str:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if lo is not None and hi is not None:
        return f"{lo:g} to {hi:g}"
    parts = []
    if lo is not None:
        parts.append(f"≥ {lo:g}")
    if xlo is not None:
        parts.append(f"> {xlo:g}")
    if hi is not None:
        parts.append(f"≤ {hi:g}")
    if xhi is not None:
        parts.append(f"< {xhi:g}")
    return " and ".join(parts)


@dataclass
class _Section:
    name: str
    anchor: str
    title: str
    group: str | None = None
    kind: str | None = None


@dataclass
class _Document:
    """One schema, with the sections of its reference in reading order."""

    key: str
    schema: JsonDict
    defaults: dict[str, dict[str, Any]]
    supported: tuple[frozenset[str], frozenset[str]]
    sections: dict[str, _Section] = field(default_factory=dict)
    groups: dict[str, tuple[str, str, list[str]]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    @property
    def defs(self) -> dict[str, JsonDict]:
        return dict(self.schema.get("$defs", {}))

    def definition(self, name: str) -> JsonDict:
        return self.schema if name == _TITLES[self.key] else self.defs[name]

    # -------------------------------------------------------------------------- discovery
    def discover(self) -> None:
        """Sections in breadth-first order from the root; union members grouped under their kinds."""
        root = _TITLES[self.key]
        self.sections[root] = _Section(root, root.lower(), root)
        queue = [root]
        self.order.append(root)
        while queue:
            name = queue.pop(0)
            for prop, sub in self.definition(name).get("properties", {}).items():
                for ref, group in self._refs(prop, sub):
                    if ref in self.sections:
                        continue
                    if group is None:
                        self.sections[ref] = _Section(ref, ref.lower(), ref)
                        self.order.append(ref)
                    else:
                        prefix, title, kind = group
                        if prefix not in self.groups:
                            self.groups[prefix] = (title, prefix + "-kinds", [])
                            self.order.append("group:" + prefix)
                        self.groups[prefix][2].append(ref)
                        self.sections[ref] = _Section(ref, f"{prefix}-{kind}", f"`{kind}`", prefix, kind)
                    queue.append(ref)

    def _refs(self, prop: str, schema: JsonDict) -> Iterator[tuple[str, tuple[str, str, str] | None]]:
        """Referenced definitions in a property schema; members of a ``kind`` union carry their group."""
        if "$ref" in schema:
            yield schema["$ref"].rsplit("/", 1)[-1], None
        mapping = schema.get("discriminator", {}).get("mapping")
        if mapping:
            # In the union's declared order (the contract's table order), not the mapping's sorted one.
            prefix, title = _GROUPS.get(prop, (prop, f"`{prop}` kinds"))
            kinds = {ref: kind for kind, ref in mapping.items()}
            refs = [s["$ref"] for s in schema.get("oneOf", []) if s.get("$ref") in kinds]
            refs += [ref for ref in kinds if ref not in refs]
            for ref in refs:
                yield ref.rsplit("/", 1)[-1], (prefix, title, kinds[ref])
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in schema.get(key, []):
                yield from self._refs(prop, sub)
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                yield from self._refs(prop, schema[key])
        for sub in schema.get("patternProperties", {}).values():
            yield from self._refs(prop, sub)

    # -------------------------------------------------------------------------- types
    def link(self, ref: str) -> str:
        name = ref.rsplit("/", 1)[-1]
        section = self.sections.get(name)
        if section is None:
            return f"`{name}`"
        return f"[{section.title}](#{section.anchor})"

    def type_of(self, schema: JsonDict) -> str:
        """A human-readable type: ``duration``, ``list of [Call](#call)``, ``one of `a`, `b` ``..."""
        if "$ref" in schema:
            return self.link(schema["$ref"])
        mapping = schema.get("discriminator", {}).get("mapping")
        if mapping:
            first = self.sections.get(next(iter(mapping.values())).rsplit("/", 1)[-1])
            if first is not None and first.group in self.groups:
                return f"[{first.group}](#{self.groups[first.group][1]}) (by `kind`)"
        if "anyOf" in schema or "oneOf" in schema:
            parts = [self.type_of(s) for s in _alternatives(schema)]
            return " or ".join(dict.fromkeys(parts))
        if "const" in schema:
            return f"`{schema['const']}`"
        if "enum" in schema:
            return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
        kind = schema.get("type")
        if kind == "string":
            if _is_duration(schema):
                examples = schema.get("examples") or ["10s"]
                return "duration (" + ", ".join(f"`{e}`" for e in examples) + ")"
            if schema.get("pattern") == NAME_PATTERN:
                return "name"
            if "pattern" in schema:
                return f"string matching `{schema['pattern']}`"
            return "string"
        if kind in ("integer", "number"):
            bounds = _bounds(schema)
            return f"{kind}, {bounds}" if bounds else str(kind)
        if kind == "boolean":
            return "boolean"
        if kind == "array":
            items = schema.get("items", {})
            if "enum" in items:
                text = "list, each one of " + ", ".join(f"`{v}`" for v in items["enum"])
            else:
                text = "list of " + self.type_of(items) if items else "list"
            if schema.get("minItems"):
                text += f" (at least {schema['minItems']})"
            return text
        if kind == "object":
            for pattern, sub in schema.get("patternProperties", {}).items():
                key = "name" if pattern == NAME_PATTERN else "string"
                return f"map of {key} → {self.type_of(sub)}"
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                return f"map of string → {self.type_of(extra)}"
            return "map"
        if kind == "null":
            return "null"
        return "any"

    # -------------------------------------------------------------------------- tables
    def presence(self, model: str, prop: str, schema: JsonDict, required: bool) -> str:
        if required:
            return "required"
        if "default" in schema:
            value = schema["default"]
            if value is None:
                return "optional"
            if isinstance(value, int | float) and any(_is_duration(s) for s in _alternatives(schema)):
                return f"default `{format_duration(float(value))}`"
            return f"default `{flow_yaml(value)}`"
        if prop in self.defaults.get(model, {}):
            return f"default `{flow_yaml(self.defaults[model][prop])}`"
        return "optional"

    def describe(self, model: str, prop: str, schema: JsonDict) -> str:
        text = FIELD_DOCS.get((model, prop)) or FIELD_DOCS.get(("*", prop))
        if text is None:
            text = _rst_to_md(schema.get("description", ""))
        return text

    def table(self, name: str) -> list[str]:
        schema = self.definition(name)
        required = set(schema.get("required", []))
        rows = ["| Field | Type | Required / default | Description |", "|---|---|---|---|"]
        for prop, sub in schema.get("properties", {}).items():
            rows.append("| " + " | ".join(_cell(c) for c in (
                f"`{prop}`", self.type_of(sub), self.presence(name, prop, sub, prop in required),
                self.describe(name, prop, sub))) + " |")
        return rows

    def intro(self, name: str) -> str:
        section = self.sections[name]
        if section.kind is not None:
            return KIND_DOCS.get(section.kind) or _rst_to_md(self.definition(name).get("description", ""))
        return MODEL_DOCS.get(name) or _rst_to_md(self.definition(name).get("description", ""))

    def status_line(self, section: _Section) -> str | None:
        faults, expectations = self.supported
        known = {"fault": faults, "expectation": expectations}.get(section.group or "")
        if known is None or section.kind in known:
            return None
        return ("**Not implemented by this version.** The schema accepts it; `validate` (with an "
                "environment), `plan` and `run` refuse it with exit 2.")

    def render(self) -> str:
        title = _TITLES[self.key]
        out = [
            f"# {title} reference",
            "",
            "<!-- Generated from the JSON Schema by `python -m harness.model.reference`; do not edit. -->",
            "",
            _INTROS[self.key],
            "",
            f"The JSON Schema itself is [../schema/{self.key}.schema.json](../schema/{self.key}.schema.json) "
            "(also printed by `mesh-harness schema`). Durations are strings with a unit (`250ms`, `10s`, "
            "`2m`); a bare number is an error. Percentages are numbers from 0 to 100. A *name* (service, "
            "version, experiment) matches `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters. Unknown "
            "fields are errors.",
            "",
            "## Contents",
            "",
        ]
        for entry in self.order:
            if entry.startswith("group:"):
                gtitle, anchor, members = self.groups[entry.removeprefix("group:")]
                out.append(f"- [{gtitle}](#{anchor}): " + ", ".join(
                    f"[{self.sections[m].title}](#{self.sections[m].anchor})" for m in members))
            else:
                section = self.sections[entry]
                out.append(f"- [{section.title}](#{section.anchor})")
        for entry in self.order:
            out.append("")
            if entry.startswith("group:"):
                out += self._render_group(entry[6:])
            else:
                out += self._render_section(self.sections[entry], "##")
        return "\n".join(out).rstrip("\n") + "\n"

    def _render_section(self, section: _Section, level: str) -> list[str]:
        out = [f'<a id="{section.anchor}"></a>', "", f"{level} {section.title}", ""]
        intro = self.intro(section.name)
        if intro:
            out += [intro, ""]
        status = self.status_line(section)
        if status:
            out += [status, ""]
        return out + self.table(section.name)

    def _render_group(self, prefix: str) -> list[str]:
        title, anchor, members = self.groups[prefix]
        out = [f'<a id="{anchor}"></a>', "", f"## {title}", "",
               "Each entry is a mapping whose `kind` selects one of these:", "",
               "| kind | what it does | this version |", "|---|---|---|"]
        for member in members:
            section = self.sections[member]
            status = "not implemented yet (refused, exit 2)" if self.status_line(section) else "supported"
            out.append(f"| [{section.title}](#{section.anchor}) | {_cell(self.intro(member))} | {status} |")
        for member in members:
            out.append("")
            out += self._render_section(self.sections[member], "###")
        return out


def render_reference(key: str, schema: JsonDict) -> str:
    """The Markdown reference of one document (``suite`` or ``environment``) from its JSON Schema."""
    doc = _Document(key, schema, factory_defaults(), _supported())
    doc.discover()
    return doc.render()


def schema_text(schema: JsonDict) -> str:
    """The schema file's text: pretty, stable key order as pydantic emits it, newline-terminated."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def generated_files(docs_dir: Path) -> dict[Path, str]:
    """Every generated file under ``docs_dir`` with the text it must have."""
    all_schemas = schemas()
    files: dict[Path, str] = {}
    for key in DOCUMENTS:
        files[docs_dir / "reference" / f"{key}.md"] = render_reference(key, all_schemas[key])
    for key in DOCUMENTS:
        files[docs_dir / "schema" / f"{key}.schema.json"] = schema_text(all_schemas[key])
    return files


def stale_files(docs_dir: Path) -> list[Path]:
    """Generated files that are missing or differ from what the current schema produces."""
    stale = []
    for path, text in generated_files(docs_dir).items():
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != text:
            stale.append(path)
    return stale


def write_generated(docs_dir: Path) -> list[Path]:
    """Write the reference pages and schema files under ``docs_dir``; return every generated path.

    Files already up to date are left untouched (no needless mtime change), but are still returned,
    so the result is the same list whatever the state of the directory.
    """
    paths = []
    for path, text in generated_files(docs_dir).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != text:
            path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def _default_docs_dir() -> Path:
    """The repository's docs/ when running from a checkout, else ./docs."""
    root = Path(__file__).resolve().parents[2]
    return root / "docs" if (root / "pyproject.toml").is_file() else Path("docs")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness.model.reference [--check] [--docs DIR]``; exit 1 with --check if stale."""
    parser = argparse.ArgumentParser(prog="python -m harness.model.reference",
                                     description="Generate the suite/environment reference and schema files.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a generated file is missing or out of date")
    parser.add_argument("--docs", type=Path, default=None, help="docs directory (default: the repository's docs/)")
    args = parser.parse_args(argv)
    docs_dir: Path = args.docs or _default_docs_dir()
    if args.check:
        stale = stale_files(docs_dir)
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        if stale:
            print("regenerate with: python -m harness.model.reference", file=sys.stderr)
            return 1
        print(f"up to date: {len(generated_files(docs_dir))} generated file(s) in {docs_dir}")
        return 0
    for path in write_generated(docs_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
