"""The driver contract: what every mesh driver must do with every change it declares it can make.

For each case: fingerprint the mesh, prepare the intent (JSON-able do/undo), apply it, see its effect
(through traffic at the gateway where the mesh carries traffic, else through the driver's own view),
undo it, and find the fingerprint back at the baseline; undoing again is harmless, and a fresh driver
object (what ``cleanup`` has after a crash) undoes from the JSON alone.

Every fault kind in a driver's capabilities must have a case here (``missing_cases``), so a driver cannot
declare a capability the contract never exercised.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from harness.mesh.base import CertificateView, MeshDriver
from harness.mesh.intents import (
    CertChange,
    HttpFault,
    Intent,
    NetworkToxic,
    Partition,
    PolicyOverride,
    ProcessSignal,
    SplitChange,
)
from harness.metrics.tls import ServedCert

Observe = Callable[[MeshDriver], bool]
"""True when the change shows: given the driver (for its gateway URL or its own view of policy)."""


@dataclass(frozen=True)
class Case:
    name: str
    covers: str  # the capability it exercises: a fault kind, or "policy:FIELD", or "split"
    intent: Intent
    shows: Observe
    gone: Observe
    prime: Callable[[MeshDriver], None] | None = None
    """Called before the change, for an observation that compares with the mesh as it was (certificates)."""


def _gateway(driver: MeshDriver, n: int = 20, timeout: float = 5.0) -> list[httpx.Response]:
    url = driver.topology().gateway_url + "/"
    with httpx.Client(timeout=timeout) as client:
        return [client.get(url) for _ in range(n)]


def _all_fail(driver: MeshDriver) -> bool:
    return all(r.status_code >= 500 for r in _gateway(driver))


def _all_ok(driver: MeshDriver) -> bool:
    return all(r.status_code == 200 for r in _gateway(driver))


def _slow(driver: MeshDriver) -> bool:
    start = time.perf_counter()
    responses = _gateway(driver, n=5)
    return all(r.status_code == 200 for r in responses) and (time.perf_counter() - start) / 5 >= 0.25


def _fast(driver: MeshDriver) -> bool:
    start = time.perf_counter()
    responses = _gateway(driver, n=5)
    return all(r.status_code == 200 for r in responses) and (time.perf_counter() - start) / 5 < 0.25


def _only_reviews_v1(driver: MeshDriver) -> bool:
    traces = [r.headers.get("x-harness-trace", "") for r in _gateway(driver, n=30)]
    return all("reviews-v1" in t and "reviews-v2" not in t and "reviews-v3" not in t for t in traces)


def _reviews_spread(driver: MeshDriver) -> bool:
    traces = " ".join(r.headers.get("x-harness-trace", "") for r in _gateway(driver, n=60))
    return all(f"reviews-{v}" in traces for v in ("v1", "v2", "v3"))


def _without_details(n: int = 5) -> Observe:
    """details (an optional call of productpage) did not answer, and the page still did."""
    def observe(driver: MeshDriver) -> bool:
        responses = _gateway(driver, n=n)
        return all(r.status_code == 200 and "details-v1" not in r.headers.get("x-harness-trace", "")
                   for r in responses)
    return observe


def _with_details(driver: MeshDriver) -> bool:
    responses = _gateway(driver, n=5)
    return all(r.status_code == 200 and "details-v1" in r.headers.get("x-harness-trace", "") for r in responses)


def _slower_than(seconds: float, n: int = 5) -> Observe:
    def observe(driver: MeshDriver) -> bool:
        start = time.perf_counter()
        responses = _gateway(driver, n=n)
        return all(r.status_code == 200 for r in responses) and (time.perf_counter() - start) / n >= seconds
    return observe


def _timeout_is(seconds: float) -> Observe:
    return lambda driver: abs(driver.policy("productpage", "reviews").timeout_s - seconds) < 1e-9


def _served(driver: MeshDriver) -> dict[str, ServedCert]:
    assert isinstance(driver, CertificateView), f"{driver.name} declares certificate faults but cannot show them"
    return driver.served_certificates()


def _certificate_case(name: str, intent: CertChange, services: tuple[str, ...], new_root: bool = False) -> Case:
    """The effect of a rotation: every sidecar of ``services`` (every sidecar when empty) serves a leaf it did
    not serve before (and, for a root rotation, trusts another root), while every request through the
    gateway still succeeds; undone, each serves exactly what it served before."""
    before: dict[str, ServedCert] = {}

    def prime(driver: MeshDriver) -> None:
        before.clear()
        before.update(_served(driver))

    def nodes(driver: MeshDriver) -> list[str]:
        return [n.id for n in driver.topology().nodes if not services or n.service in services]

    def shows(driver: MeshDriver) -> bool:
        now = _served(driver)
        return (all(set(now[n].leaf).isdisjoint(before[n].leaf) and (not new_root or now[n].trust != before[n].trust)
                    for n in nodes(driver)) and _all_ok(driver))

    def gone(driver: MeshDriver) -> bool:
        now = _served(driver)
        if getattr(driver, "reissues_leaves", False):
            # The mesh's own CA issues every leaf (Consul): an undone rotation leaves new leaves under the original
            # root, which the driver's fingerprint compares; every root trusted before is trusted still.
            return all(set(before[n].trust) <= set(now[n].trust) for n in nodes(driver)) and _all_ok(driver)
        return all(now[n] == before[n] for n in nodes(driver)) and _all_ok(driver)

    return Case(name, "cert-rotation" if intent.what != "untrusted" else "cert-untrusted", intent, shows, gone, prime)


def certificate_cases() -> list[Case]:
    """Cases for the certificate faults on the demo environment: rotations observed in each sidecar's
    certificates (and traffic unharmed), an untrusted target observed in traffic (its callers refuse it)."""
    return [
        _certificate_case("leaf rotation", CertChange(("reviews", "ratings"), "leaf"), ("reviews", "ratings")),
        _certificate_case("root rotation", CertChange((), "ca"), (), new_root=True),
        Case("untrusted target", "cert-untrusted", CertChange(("details",), "untrusted"), _without_details(),
             _with_details),
    ]


def traffic_cases() -> list[Case]:
    """Cases for the demo environment (environments/local.yaml), observed through its gateway."""
    return [
        Case("abort at target", "http-abort", HttpFault("reviews", 100.0, abort_status=503), _all_fail, _all_ok),
        Case("abort at caller", "http-abort",
             HttpFault("reviews", 100.0, at="caller", abort_status=503), _all_fail, _all_ok),
        Case("delay at target", "http-delay", HttpFault("details", 100.0, delay_s=0.3), _slow, _fast),
        Case("delay at caller", "http-delay", HttpFault("details", 100.0, at="caller", delay_s=0.3), _slow, _fast),
        Case("policy timeout", "policy:timeout",
             PolicyOverride("productpage", "reviews", {"timeout": "250ms"}), _timeout_is(0.25), _timeout_is(3.0)),
        Case("split to v1 (a traffic-shift step)", "traffic-shift",
             SplitChange("reviews", (("v1", 100.0), ("v2", 0.0), ("v3", 0.0))), _only_reviews_v1, _reviews_spread),
        Case("latency on the wire", "net-latency",
             NetworkToxic("productpage", "details", "latency", (("latency", 300), ("jitter", 0))), _slow, _fast),
        Case("bandwidth on the wire", "net-bandwidth",
             NetworkToxic("productpage", "details", "bandwidth", (("rate", 1),)), _slower_than(0.1), _fast),
        Case("reset on the wire", "net-reset",
             NetworkToxic("productpage", "details", "reset_peer", (("timeout", 0),)), _without_details(),
             _with_details),
        Case("partition, refused", "partition", Partition((("productpage",), ("details",)), "reject"),
             _without_details(), _with_details),
        Case("partition, blackhole", "partition", Partition((("details",), ("productpage",)), "blackhole"),
             _without_details(n=2), _with_details),
        Case("partition via network", "partition.via=network",
             Partition((("details",), ("productpage",)), "blackhole", "network"), _without_details(n=2),
             _with_details),
        Case("kill and restart", "kill", ProcessSignal("details", "kill", count=1), _without_details(),
             _with_details),
        Case("pause and thaw", "pause", ProcessSignal("details", "pause", count=1), _without_details(n=2),
             _with_details),
    ]


def missing_cases(driver: MeshDriver, cases: list[Case]) -> list[str]:
    """Fault kinds the driver declares that no case exercises."""
    covered = {c.covers for c in cases}
    declared = driver.capabilities.faults | driver.capabilities.fault_options
    return sorted(kind for kind in declared if kind not in covered)


def refused_option(driver: MeshDriver, case: Case) -> str | None:
    """The ``kind.field=value`` of the case that the driver refuses though it does the kind (a partition's
    ``mode``, a rotation's ``what``: ``validate`` refuses them at their line), or None."""
    option = None
    if isinstance(case.intent, Partition):
        option = f"partition.mode={case.intent.mode}"
    elif isinstance(case.intent, CertChange):
        option = f"{case.covers}.what={case.intent.what}"
    return option if option is not None and option in driver.capabilities.refused else None


def applicable(driver: MeshDriver, case: Case) -> bool:
    """A case runs only on a driver that declares what it covers: its fault kind (or fault option,
    ``kind.field=value``), the placement of an HTTP fault, the policy field; and not where the driver
    refuses one of the case's values (:func:`refused_option`)."""
    caps = driver.capabilities
    if "=" in case.covers:
        return case.covers in caps.fault_options
    if case.covers.startswith("policy:"):
        return case.covers.removeprefix("policy:") in caps.policy_fields
    if isinstance(case.intent, HttpFault) and case.intent.at not in caps.http_placements:
        return False
    if refused_option(driver, case) is not None:
        return False
    return case.covers in caps.faults


def run_case(driver: MeshDriver, fresh: Callable[[], MeshDriver], case: Case,
             settle_s: float = 0.0) -> None:
    """Apply, observe, undo, compare; then undo again and undo from a fresh driver: nothing changes."""
    if case.prime is not None:
        case.prime(driver)
    baseline = driver.fingerprint()
    prepared = driver.prepare(case.intent)
    json.dumps(prepared.do)
    undo = json.loads(json.dumps(prepared.undo))  # what the journal keeps, exactly
    driver.apply(prepared)
    try:
        time.sleep(settle_s)
        assert driver.fingerprint() != baseline, f"{case.name}: applying changed nothing the driver can see"
        assert case.shows(driver), f"{case.name}: the change does not show"
    finally:
        driver.undo(undo)
    assert driver.fingerprint() == baseline, f"{case.name}: undo did not restore the baseline"
    time.sleep(settle_s)
    assert case.gone(driver), f"{case.name}: the mesh does not behave as before"
    driver.undo(undo)
    again = fresh()
    try:
        again.undo(undo)
    finally:
        again.close()
    assert driver.fingerprint() == baseline, f"{case.name}: undoing twice (or from cleanup) changed something"
    # What cleanup does after a crash: a fresh driver, with only the JSON undo, removes a change in force.
    driver.apply(driver.prepare(case.intent))
    again = fresh()
    try:
        again.undo(undo)
    finally:
        again.close()
    assert driver.fingerprint() == baseline, f"{case.name}: a fresh driver did not undo a change in force"
