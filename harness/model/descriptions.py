"""What each model, kind and field of the two documents means, in words for users.

Why a module of its own: these texts go into the JSON Schema as ``description`` (so an editor with
yaml-language-server shows them on hover) and from there into the generated reference; the schema is
the single place the reference reads them from. The models' docstrings and ``Field(description=...)``
are written for developers and cover only some fields, so the text here comes first and a model's own
description is the fallback for anything not covered.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["FIELD_DOCS", "KIND_DOCS", "MODEL_DOCS", "describe_schema"]

JsonDict = dict[str, Any]

MODEL_DOCS: dict[str, str] = {
    "Suite": "The document root. Put `# yaml-language-server: $schema=../docs/schema/suite.schema.json` on "
             "the first line for completion in editors (see [editor support](../editor.md)).",
    "Environment": "The document root. Put `# yaml-language-server: $schema=../docs/schema/environment.schema.json` "
                   "on the first line for completion in editors (see [editor support](../editor.md)).",
    "GameDay": "The document root. Put `# yaml-language-server: $schema=../docs/schema/gameday.schema.json` "
               "on the first line for completion in editors (see [editor support](../editor.md)).",
    "GameDaySpec": "The body of a GameDay.",
    "GameDayWindow": ("When the game day may touch the mesh, checked by the harness at start whatever "
                      "started it: outside it, nothing runs (exit 2)."),
    "Notify": "Where a summary of each run is posted.",
    "Metadata": "Names the document.",
    "SuiteSpec": "The body of a Suite.",
    "Defaults": "Settings every experiment of the suite inherits; an experiment's own value wins.",
    "LoadSettings": (
        "The load Locust sends to the gateway: `users` concurrent users sharing a constant total `rate` of "
        "GET requests per second. Merged field by field: an experiment's `load` refines the suite's "
        "`defaults.load`, which refines the built-in `{users: 10, rate: 100, path: /}`. At the client, a "
        "response that arrived and is not a 5xx counts as a success; 5xx and no response count as failures."
    ),
    "Phases": (
        "How long each phase lasts: a duration, or `{min, max}` for an [adaptive phase](#adaptivephase). "
        "Merged field by field with `defaults.phases`; the built-in lengths are baseline `5s`, fault `10s`, "
        "recovery `5s`. After the merge, an experiment with faults needs a fault phase longer than `0s`, and "
        "baseline + fault + recovery (each at its `max`; the fault phase at least as long as a traffic "
        "shift's holds) must not exceed 59m (3540 s): the load generator stops a run after an hour, less a "
        "minute for setup. Both are checked by `validate`, on the line that sets the length."
    ),
    "AdaptivePhase": (
        "A phase that runs at least `min`, then ends at the first look where every expectation judged on it "
        "has a settled verdict (pass or fail, not inconclusive), or at `max`. Looks are at `min`, every 25% "
        "longer (at least 1 s apart, none in the last second before `max`), and at `max`; each is judged at "
        "confidence 1 − (1 − confidence) / looks, so stopping early keeps the suite's error rate."
    ),
    "Experiment": (
        "One fault (or none) under load, with its expectations. Phases run in order `baseline` → `fault` → "
        "`recovery`; `policy` is applied before the baseline and restored after the recovery."
    ),
    "PolicyChange": (
        "A temporary policy for one edge, for one experiment: journalled, applied before the baseline, "
        "restored after the recovery. It changes only the fields it names, inside blocks too: "
        "`circuit_breaker: {max_requests: 5}` sets that one limit and keeps the edge's other thresholds; "
        "everything not named stays as the environment declares it."
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
        "A safety stop, checked from the start of the fault phase on the trailing second of evidence (client "
        "requests, or the sidecars' counters for `service:` and `edge:` scopes): once the condition has "
        "held for `for`, every fault is removed at once, the experiment skips to recovery and is marked "
        "`aborted`."
    ),
    "EnvironmentSpec": "The body of an Environment.",
    "Gateway": (
        "Where load enters the mesh: on `local` (and `compose`) a separate gateway Envoy on 127.0.0.1 that "
        "routes to `service`; on a mesh the harness does not start, `url`."
    ),
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
    "IstioSettings": (
        "For `mesh: istio`: where the control plane is and which of your own Istio resources belong to the "
        "environment. Read only when `mesh` is `istio`. `control_plane: local` runs the real istiod for local "
        "workloads (docs/concepts/istio.md); `cluster` drives the mesh of the current kube context."
    ),
    "LinkerdSettings": ("For `mesh: linkerd`: where the services live, in the cluster of the current kube context "
                        "(docs/concepts/linkerd.md). Read only when `mesh` is `linkerd`."),
    "ConsulSettings": (
        "For `mesh: consul`: where the Consul agent is and where its ACL token comes from. The token itself "
        "is never written in the file (a `token:` field is refused). Read only when `mesh` is `consul`."
    ),
    "ComposeSettings": (
        "For `mesh: compose`: the docker compose project the harness generates from `services:`. Read only "
        "when `mesh` is `compose`."
    ),
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
        "request reached the callee more than 1+n times. A split callee is predicted per version (Envoy keeps "
        "a request's retries in the version it was routed to): Σ w_v (1−p_v^(n+1))."
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
    ("GameDay", "kind"): "Always `GameDay`.",
    ("GameDay", "spec"): "The game day's body.",
    ("GameDaySpec", "environment"): (
        "Name or path of the Environment every suite runs against (a name is looked up beside the game-day "
        "file, then in `environments/NAME.yaml`); without it, each suite's own `spec.environment`."
    ),
    ("GameDaySpec", "suites"): ("Suite files, relative to the working directory (or beside the game-day "
                                "file); at least one."),
    ("GameDaySpec", "select"): "Which experiments run, like pytest `-k` (names and tags).",
    ("GameDaySpec", "schedule"): ("A cron line of five fields (`0 10 * * 3`), written into the CronJob and "
                                  "workflow `gameday manifests` makes; the harness runs no scheduler."),
    ("GameDaySpec", "window"): "The days and hours the game day may run in; any time when absent.",
    ("GameDaySpec", "history"): ("Where every run's results and Allure results are kept, with the report and "
                                 "its trend; default `gamedays/NAME/`."),
    ("GameDaySpec", "notify"): "Webhooks that get a JSON summary (with a `text` field) after each run.",
    ("GameDayWindow", "days"): "Days of the week: `mon` … `sun` (default: every day).",
    ("GameDayWindow", "hours"): "`HH:MM-HH:MM`, start included, end excluded (`24:00` ends the day).",
    ("GameDayWindow", "timezone"): "An IANA time zone (`Europe/Berlin`); default `UTC`.",
    ("Notify", "webhook"): "An `http(s)://` URL; a webhook that fails is reported, never fatal.",
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
    ("LoadSettings", "workers"): (
        "Locust worker processes for a rate one process cannot reach (Locust's own distributed mode: a "
        "master and `workers` processes it forks, on 127.0.0.1); built-in default 0, one process. At most "
        "32, and with `remote_workers` at most `users`."
    ),
    ("LoadSettings", "remote_workers"): (
        "Locust workers started elsewhere, which each experiment's master waits for (up to 5 minutes) on "
        "`127.0.0.1:master_port`: a container of the same pod, or another machine with that port and the "
        "gateway's forwarded to this one (`ssh -R`). Their records come back over Locust's message channel. "
        "The harness writes `remote-worker.sh`, which starts one for every experiment, into the run's load "
        "directory."
    ),
    ("LoadSettings", "master_port"): (
        "The port the master listens on (127.0.0.1 only), fixed so that remote workers can be pointed at it "
        "(through `ssh -R` or the pod's own 127.0.0.1); required with `remote_workers`."
    ),
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
        "`refused-stream`, ...) or status codes such as `503`: a list, one condition, or Istio's "
        "comma-separated `retryOn` string (`\"5xx,connect-failure\"`). Conditions separated only by spaces "
        "are refused."
    ),
    ("Retries", "per_try_timeout"): (
        "Timeout of each attempt; without it, each attempt may use the whole route timeout."
    ),
    ("CircuitBreaker", "max_connections"): "Connections to each callee version (local default 1024).",
    ("CircuitBreaker", "max_pending"): "Requests waiting for a connection (local default 1024).",
    ("CircuitBreaker", "max_requests"): "Concurrent requests (local default 1024).",
    ("CircuitBreaker", "max_retries"): "Concurrent retries (local default 1024, never Envoy's 3).",
    ("OutlierDetection", "consecutive_5xx"): "Consecutive 5xx answers that eject an instance (Envoy default 5).",
    ("OutlierDetection", "interval"): "How often ejections are evaluated (Envoy default `10s`); longer than `0s`.",
    ("OutlierDetection", "base_ejection_time"): (
        "How long an instance stays ejected, the first time (Envoy default `30s`); longer than `0s`."
    ),
    ("OutlierDetection", "max_ejection_percent"): (
        "Most instances of a cluster that may be ejected at once, in percent (Envoy default 10)."
    ),
    ("OutlierDetection", "min_health_percent"): (
        "Istio's `minHealthPercent`: below this share of healthy instances, a cluster is in panic mode and "
        "sends to every instance, ejected ones too (Envoy's `healthy_panic_threshold`; Envoy default 50, "
        "Istio's 0: ejecting a version's only instance then stops its traffic)."
    ),
    ("Target", "service"): "A service of the environment.",
    ("Target", "version"): "One of its versions; all versions when absent.",
    ("Edge", "from"): "The calling service.",
    ("Edge", "to"): "The called service.",
    ("Route", "from"): "The calling service (`gateway` names the gateway Envoy).",
    ("Route", "to"): "The called service.",
    ("ShiftStep", "split"): "Version → percentage; must sum to 100.",
    ("ShiftStep", "hold"): "How long the step holds; longer than `0s`.",
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
    ("HttpDelay", "delay"): "How long each affected request is held; longer than `0s`.",
    ("HttpDelay", "percent"): (
        "Share of requests delayed (0–100). Refused above the environment's `safety.max_fault_percent`."
    ),
    ("HttpDelay", "headers"): "Only requests with these headers (not implemented yet: refused).",
    ("HttpDelay", "at"): "`target` (inbound, default) or `caller` (outbound of every caller), as for `http-abort`.",
    ("NetLatency", "edge"): "The edge whose TCP traffic is delayed.",
    ("NetLatency", "latency"): "Added latency; longer than `0s`.",
    ("NetLatency", "jitter"): "Random variation of the latency.",
    ("NetBandwidth", "edge"): "The edge whose throughput is capped.",
    ("NetBandwidth", "rate_kbps"): "Cap in kilobytes per second.",
    ("NetReset", "edge"): "The edge whose connections are reset.",
    ("NetReset", "after"): "Reset connections after this long.",
    ("Partition", "from"): "Services on one side (a name or a list).",
    ("Partition", "to"): "Services on the other side (a name or a list).",
    ("Partition", "mode"): "`blackhole`: connections hang; `reject`: connections are refused.",
    ("Partition", "via"): "`proxy` (default): each edge between the groups crosses a Toxiproxy that cuts it; "
                          "`network` (mesh: compose): the `from` instances are disconnected from the mesh network, "
                          "cut off from every peer, so `to` must name every service they talk with (blackhole only).",
    ("Kill", "target"): "The service (and optionally version) whose instances are killed.",
    ("Kill", "count"): "How many instances.",
    ("Kill", "percent"): "Or (not with `count`): what share of the instances.",
    ("Kill", "restart"): "Start them again when the fault ends.",
    ("Pause", "target"): "The service (and optionally version) whose instances are frozen.",
    ("Pause", "count"): "How many instances.",
    ("Pause", "percent"): "Or (not with `count`): what share of the instances.",
    ("TrafficShift", "service"): "The service whose split moves.",
    ("TrafficShift", "steps"): "The splits to move through, in order; expectations name them with `step: N` (from 1).",
    ("TrafficShift", "on_fail"): (
        "`continue`: every step runs whatever its expectations say; `halt`: the expectations of each step are "
        "judged as it ends, and the first that fails stops the shift, restores the environment's split and "
        "ends the fault phase (as Flagger rolls a canary back); the results say at which step and why."
    ),
    ("CertRotation", "target"): (
        "Services whose certificates rotate (a name, a list, or `all`: every service and the gateway). A `ca` "
        "rotation re-issues every leaf of the mesh whatever the target; the target is what `rotated` checks."
    ),
    ("CertRotation", "what"): (
        "`leaf`: the targets' leaves are re-issued by the mesh's CA; `ca`: a new root is introduced through an "
        "overlap bundle (new + old) on every sidecar, every leaf is re-issued from it, then the old root is "
        "retired, each stage confirmed on every sidecar before the next."
    ),
    ("CertRotation", "at"): (
        "Offset into the fault phase at which the rotation starts; without it, as the fault window opens "
        "(after `settle`), so that the window sees the swap. The rotation (with its holds) must end before the "
        "fault phase does."
    ),
    ("CertRotation", "hold"): (
        "`what: ca` only: how long the overlap bundle, and then the new leaves under it, stay in force under "
        "load before the next stage; `0s`: the next stage starts as soon as every sidecar shows the last."
    ),
    ("CertUntrusted", "target"): (
        "The service (with `version`, one version of it) whose sidecars are given a leaf with their own "
        "identity, signed by a CA nobody trusts."
    ),
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
    ("TimeoutExpectation", "at"): "When timed-out requests must end (±10% or 20ms); longer than `0s`.",
    ("TrafficSplitExpectation", "service"): "The service whose split is checked.",
    ("TrafficSplitExpectation", "window"): _WINDOW + " Give `window` or `step`; without either, `fault`.",
    ("TrafficSplitExpectation", "step"): (
        "Judge step N (from 1) of the experiment's `traffic-shift`: its window runs from the step's settle to "
        "its end."
    ),
    ("TrafficSplitExpectation", "split"): "Version → expected percentage; must sum to 100.",
    ("TrafficSplitExpectation", "tolerance"): (
        "Percentage points. With it, the test is equivalence: pass only when every version's share "
        "interval lies within ± tolerance of its declared share."
    ),
    ("CanaryExpectation", "service"): "The service with the two versions.",
    ("CanaryExpectation", "baseline"): "The version compared against.",
    ("CanaryExpectation", "canary"): "The version under test.",
    ("CanaryExpectation", "signals"): "Which signals to compare.",
    ("CanaryExpectation", "window"): _WINDOW + " Give `window` or `step`; without either, `fault`.",
    ("CanaryExpectation", "step"): "Judge step N (from 1) of the experiment's `traffic-shift`.",
    ("MtlsExpectation", "failed_requests"): (
        "Most failed requests allowed (usually 0): client requests that failed plus calls between services "
        "that their callers' sidecars answered with a 5xx, counted over the whole window. Without any of "
        "the three fields, `failed_requests: 0` is judged."
    ),
    ("MtlsExpectation", "rotated"): (
        "`true`: every sidecar of the experiment's `cert-rotation` targets serves, at the window's end, a leaf "
        "it did not serve before the fault phase; `false`: none was replaced."
    ),
    ("MtlsExpectation", "rejects"): (
        "Bad peers that must be refused: the harness plays each against every instance's inbound listener at "
        "the window's end (`plaintext`; `untrusted`: a client certificate from a CA nobody trusts; "
        "`wrong-identity`: one from the mesh's CA with an identity outside its trust domain), and the "
        "listeners' handshake counters must show the refusals. Under `mtls: permissive` plaintext is "
        "accepted, and the verdict says so."
    ),
    ("PromqlExpectation", "query"): (
        "A PromQL query, evaluated at the end of `window`; `{{ interval }}` is replaced by the window's "
        "length (Flagger's placeholder). Every series it returns must meet the bound."
    ),
    ("PromqlExpectation", "min"): "Lower bound (at least one of `min`, `max`).",
    ("PromqlExpectation", "max"): "Upper bound (at least one of `min`, `max`).",
    ("AbortCondition", "signal"): "What to watch.",
    ("AbortCondition", "scope"): (
        "Where the signal is read, as for `slo`: `client`, `service:NAME` (its inbound sidecars) or "
        "`edge:A->B` (A's sidecars, calls to B)."
    ),
    ("AbortCondition", "quantile"): "For `latency`: the quantile (default 0.99).",
    ("AbortCondition", "below"): "Abort when the signal is below this (give `below` or `above`).",
    ("AbortCondition", "above"): "Abort when the signal is above this; for latency a duration such as `500ms`.",
    ("AbortCondition", "for"): "How long the condition must hold.",
    # ---------------------------------------------------------------------------- environment
    ("EnvironmentSpec", "mesh"): (
        "Which mesh drives it: `local` and `compose` are built by the harness from `services`; `istio`, "
        "`linkerd` and `consul` are existing meshes, or with `control_plane: local` a real control plane the "
        "harness runs for local workloads (see their blocks below)."
    ),
    ("EnvironmentSpec", "gateway"): "Where load enters.",
    ("EnvironmentSpec", "services"): "The services. Names are unique and calls must not form a cycle.",
    ("EnvironmentSpec", "mtls"): (
        "`strict`: sidecars accept only mutual TLS; `permissive`: TLS or plaintext; `off`: plaintext. "
        "Istio's PeerAuthentication modes are accepted too, in any case: `STRICT`, `PERMISSIVE`, and "
        "`DISABLE` (= `off`). `UNSET`, `ISTIO_MUTUAL` and `true` are refused: each could mean more than one "
        "mode."
    ),
    ("EnvironmentSpec", "metrics"): "Where counters come from.",
    ("EnvironmentSpec", "safety"): "Limits enforced before anything is changed.",
    ("EnvironmentSpec", "istio"): "Settings for `mesh: istio`.",
    ("EnvironmentSpec", "linkerd"): "Settings for `mesh: linkerd`.",
    ("EnvironmentSpec", "consul"): "Settings for `mesh: consul`.",
    ("EnvironmentSpec", "compose"): "Settings for `mesh: compose`.",
    ("IstioSettings", "control_plane"): (
        "`local`: the harness runs a real istiod for local workloads (no cluster); `cluster`: the mesh of the "
        "current kube context, which must be in `safety.allowed_contexts`."
    ),
    ("IstioSettings", "namespace"): (
        "Namespace of the services: their hosts are `<service>.<namespace>.svc.cluster.local`, and short names "
        "in your VirtualServices and DestinationRules resolve in it."
    ),
    ("IstioSettings", "config"): (
        "Your own VirtualService / DestinationRule / PeerAuthentication / Sidecar files (paths or globs, "
        "relative to the environment file). With `local` they are the environment's policy in place of the one "
        "derived from `services` (a service with no DestinationRule gets one holding its version subsets); "
        "with `cluster`, `plan` shows how they differ from what the cluster has."
    ),
    ("LinkerdSettings", "namespace"): "Namespace of the services.",
    ("ConsulSettings", "control_plane"): (
        "`local`: the harness runs a real Consul agent (`consul agent -dev`, from `mesh-harness install consul`) "
        "for local workloads, each with a Connect sidecar; `cluster`: an existing datacenter at `address`, through "
        "its HTTP API (config entries and intentions only; its Prometheus at `metrics.url` for the signals)."
    ),
    ("ConsulSettings", "address"): (
        "HTTP address of a Consul agent or server of the datacenter (`cluster`); the local agent picks its own."
    ),
    ("ConsulSettings", "token_env"): (
        "Name of the environment variable that holds the ACL token (e.g. `CONSUL_HTTP_TOKEN`); the token is "
        "never read from the file."
    ),
    ("ComposeSettings", "project"): "The compose project name (lower-case); without it, the environment's name.",
    ("Gateway", "service"): "The service that receives the load.",
    ("Gateway", "port"): "Port of the gateway on 127.0.0.1; 0 picks a free one (meshes the harness starts).",
    ("Gateway", "url"): (
        "Where load enters a mesh the harness does not start (`istio`, `linkerd`, `consul`), e.g. "
        "`http://127.0.0.1:8080`."
    ),
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
        "`envoy`: scrape every sidecar's admin endpoint. `prometheus`: read the same counters through PromQL "
        "(`prometheus-api-client`), from `url` or, without it, a Prometheus the local mesh starts (Debian's "
        "`prometheus` on PATH) scraping every sidecar."
    ),
    ("MetricsConfig", "url"): "For `prometheus`: the server to query (it must scrape the mesh's Envoys); "
                              "without it the local mesh starts its own.",
    ("MetricsConfig", "scrape_interval"): (
        "How often counters are scraped in the background (phase boundaries are scraped on demand), and the "
        "scrape interval of the Prometheus the local mesh starts; longer than `0s`."
    ),
    ("Safety", "max_fault_percent"): "A fault above this percentage is refused before anything is applied (exit 2).",
    ("Safety", "allowed_contexts"): (
        "Kubernetes meshes: the only kube contexts the harness may act on (unused by `local`)."
    ),
    ("Safety", "allowed_namespaces"): (
        "Kubernetes meshes: the only namespaces the harness may act on (unused by `local`)."
    ),
}


def rst_to_md(text: str) -> str:
    """Docstrings use reStructuredText ``literals``; Markdown wants `literals`."""
    return re.sub(r"``([^`]+)``", r"`\1`", " ".join(text.split()))


def _kind_of(definition: JsonDict) -> str | None:
    kind = definition.get("properties", {}).get("kind", {})
    const = kind.get("const")
    return const if isinstance(const, str) else None


def _describe_model(name: str, definition: JsonDict) -> None:
    kind = _kind_of(definition)
    text = (KIND_DOCS.get(kind or "") or MODEL_DOCS.get(name)
            or rst_to_md(definition.get("description", "")))
    if text:
        definition["description"] = text
    else:
        definition.pop("description", None)
    for prop, sub in definition.get("properties", {}).items():
        text = (FIELD_DOCS.get((name, prop)) or FIELD_DOCS.get(("*", prop))
                or rst_to_md(sub.get("description", "")))
        if text:
            sub["description"] = text


def describe_schema(schema: JsonDict, root: str) -> None:
    """Put the user-facing description on every definition and property of ``schema`` (in place).

    ``root`` names the model at the top of the schema (``Suite`` or ``Environment``), which pydantic
    inlines rather than listing under ``$defs``.
    """
    _describe_model(root, schema)
    for name, definition in schema.get("$defs", {}).items():
        _describe_model(name, definition)
