"""The policy actually in force on an edge: declared fields, experiment overrides, then mesh defaults.

Envoy's own defaults would quietly distort experiments (a 3-concurrent-retry breaker, for one), so the
local mesh never leaves a field implicit: every value below is written into the Envoy config, and
``plan`` prints the defaults it used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.model.environment import Call, CircuitBreaker, EdgePolicy, OutlierDetection, Retries

__all__ = ["LOCAL_DEFAULTS", "MeshDefaults", "ResolvedOutlier", "ResolvedPolicy", "merge_policy", "resolve"]


@dataclass(frozen=True)
class MeshDefaults:
    """What a mesh does on an edge where the environment says nothing."""

    retries: int = 0
    retry_on: tuple[str, ...] = ("5xx",)
    timeout_s: float = 15.0
    max_connections: int = 1024
    max_pending: int = 1024
    max_requests: int = 1024
    max_retries: int = 1024
    connect_timeout_s: float = 1.0


LOCAL_DEFAULTS = MeshDefaults()
"""Plain Envoy's defaults made explicit, except the 3-concurrent-retries breaker (raised to 1024)."""


@dataclass(frozen=True)
class ResolvedOutlier:
    consecutive_5xx: int
    interval_s: float
    base_ejection_time_s: float
    max_ejection_percent: float
    min_health_percent: float = 50.0
    """Below this share of healthy hosts the cluster panics and uses every host (Envoy's default 50)."""


@dataclass(frozen=True)
class ResolvedPolicy:
    """Every knob of an edge with a concrete value, and which of them came from defaults."""

    retries: int
    retry_on: tuple[str, ...]
    per_try_timeout_s: float | None
    timeout_s: float
    max_connections: int
    max_pending: int
    max_requests: int
    max_retries: int
    outlier: ResolvedOutlier | None
    defaulted: tuple[str, ...] = field(default=())


_POLICY_FIELDS = {"retries", "timeout", "circuit_breaker", "outlier_detection"}


def merge_policy(base: EdgePolicy | None, override: EdgePolicy | None) -> EdgePolicy:
    """Field by field, blocks included: ``circuit_breaker: {max_requests: 5}`` in an experiment changes
    that one limit and keeps the environment's other limits, as "set max_requests to 5" means."""
    data: dict[str, Any] = base.model_dump(exclude_none=True, include=_POLICY_FIELDS) if base else {}
    if override is not None:
        for key, value in override.model_dump(exclude_none=True, include=_POLICY_FIELDS).items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = data[key] | value
            else:
                data[key] = value
    return EdgePolicy.model_validate(data)


def resolve(policy: EdgePolicy | Call | None, defaults: MeshDefaults = LOCAL_DEFAULTS) -> ResolvedPolicy:
    """Fill every absent field from ``defaults`` and record which ones were filled."""
    defaulted: list[str] = []
    retries = policy.retries if policy else None
    if retries is None:
        defaulted.append("retries")
        retries = Retries(attempts=defaults.retries, on=list(defaults.retry_on))
    timeout = policy.timeout if policy else None
    if timeout is None:
        defaulted.append("timeout")
        timeout = defaults.timeout_s
    cb = (policy.circuit_breaker if policy else None) or CircuitBreaker()
    limits = {}
    for name in ("max_connections", "max_pending", "max_requests", "max_retries"):
        value = getattr(cb, name)
        if value is None:
            defaulted.append(f"circuit_breaker.{name}")
            value = getattr(defaults, name)
        limits[name] = value
    od: OutlierDetection | None = policy.outlier_detection if policy else None
    outlier = None
    if od is not None:
        # Envoy's documented defaults for the fields left out.
        outlier = ResolvedOutlier(
            consecutive_5xx=od.consecutive_5xx if od.consecutive_5xx is not None else 5,
            interval_s=od.interval if od.interval is not None else 10.0,
            base_ejection_time_s=od.base_ejection_time if od.base_ejection_time is not None else 30.0,
            max_ejection_percent=od.max_ejection_percent if od.max_ejection_percent is not None else 10.0,
            min_health_percent=od.min_health_percent if od.min_health_percent is not None else 50.0,
        )
    else:
        defaulted.append("outlier_detection")
    return ResolvedPolicy(
        retries=retries.attempts,
        retry_on=tuple(retries.on),
        per_try_timeout_s=retries.per_try_timeout,
        timeout_s=timeout,
        outlier=outlier,
        defaulted=tuple(defaulted),
        **limits,
    )
