"""The figures ``python -m bench --json FILE`` writes: a fixed set of keys, each the median over repetitions.

Why a fixed, flat set: the file is compared across runs and machines by scripts that should need no
knowledge of the table's layout, and a key that vanishes when a benchmark breaks would read as "not
measured" rather than "broken". So every key is always written; a figure that could not be measured is
``null``, and so are its ``_min``/``_max``.

Why per repetition first: a p99 is a property of one batch of samples taken under one set of conditions
(one mesh, one moment of the shared machine). Pooling every repetition's samples would let one noisy
repetition dominate the tail; computing the figure per repetition and then taking the median across them,
with the spread beside it, shows both the typical value and how much the machine moved it.

Pure: numbers in, numbers out, unit-tested on fake samples (no mesh, no timing).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "BENCHMARKS",
    "FIGURES",
    "FIGURE_KEYS",
    "JSON_KEYS",
    "Figure",
    "Repetition",
    "assemble",
    "per_repetition",
    "percentile",
]

Repetition = Mapping[str, Sequence[float]]
"""One repetition's raw samples by measurement name (a single value is a one-element list). A measurement
missing from a repetition was not taken in it."""


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation, as numpy's default; one sample is itself."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no samples")
    if len(ordered) == 1:
        return ordered[0]
    return float(statistics.quantiles(ordered, n=1000, method="inclusive")[max(0, min(998, round(q * 1000) - 1))])


def _p50(samples: Sequence[float]) -> float:
    return percentile(samples, 0.5)


def _p99(samples: Sequence[float]) -> float:
    return percentile(samples, 0.99)


def _value(samples: Sequence[float]) -> float:
    """A measurement taken once per repetition (the median, should one ever be taken more often)."""
    return statistics.median(samples)


def _ratio(measured: Sequence[float], baseline: Sequence[float]) -> float:
    """measured / baseline of the same repetition: the two ran a moment apart, so the machine's load cancels."""
    return statistics.median(measured) / statistics.median(baseline)


@dataclass(frozen=True)
class Figure:
    """One key of the JSON: which benchmark measures it, from which raw samples, and how."""

    key: str
    benchmark: str
    """The benchmark whose failure (in any repetition) makes this figure null."""
    inputs: tuple[str, ...]
    compute: Callable[..., float]
    """The figure of one repetition, from the samples of each of ``inputs`` in that order."""


FIGURES: tuple[Figure, ...] = (
    Figure("envoy_reload_ms_p50", "envoy reload", ("envoy_reload_ms",), _p50),
    Figure("fault_activation_ms_p50", "fault activation", ("activation_ms",), _p50),
    Figure("fault_activation_ms_p99", "fault activation", ("activation_ms",), _p99),
    Figure("rollback_ms_p99", "fault activation", ("rollback_ms",), _p99),
    Figure("net_fault_activation_ms_p99", "net fault activation", ("net_activation_ms",), _p99),
    Figure("mesh_up_s", "mesh up", ("mesh_up_s",), _value),
    Figure("mesh_rss_mib", "mesh memory", ("mesh_pss_mib",), _value),
    Figure("load_rps_bare_locust", "load", ("load_bare_rps",), _value),
    Figure("load_rps_harness", "load", ("load_harness_rps",), _value),
    Figure("load_ratio", "load", ("load_harness_rps", "load_bare_rps"), _ratio),
    Figure("l4_proxy_rps", "l4 proxy", ("l4_proxy_rps",), _value),
    Figure("envoy_tcp_proxy_rps", "l4 proxy", ("envoy_tcp_proxy_rps",), _value),
    Figure("l4_ratio", "l4 proxy", ("l4_proxy_rps", "envoy_tcp_proxy_rps"), _ratio),
    Figure("scrape_ms_p50", "scrape", ("scrape_ms",), _p50),
    Figure("standard_suite_s", "standard suite", ("standard_suite_s",), _value),
)

FIGURE_KEYS: tuple[str, ...] = tuple(f.key for f in FIGURES)
JSON_KEYS: tuple[str, ...] = tuple(key + suffix for key in FIGURE_KEYS for suffix in ("", "_min", "_max"))
"""Exactly the keys of the ``--json`` file, in the order written."""
BENCHMARKS: tuple[str, ...] = tuple(dict.fromkeys(f.benchmark for f in FIGURES))

DIGITS = 4
"""Decimals kept in the file: below any figure's noise, and short enough to read."""


def per_repetition(figure: Figure, repetitions: Sequence[Repetition]) -> list[float]:
    """The figure of each repetition that took all its inputs (and where it is a finite number)."""
    out = []
    for rep in repetitions:
        samples = [rep.get(name) for name in figure.inputs]
        if not all(samples):
            continue
        try:
            value = float(figure.compute(*samples))
        except ZeroDivisionError:
            continue
        if math.isfinite(value):
            out.append(value)
    return out


def assemble(repetitions: Sequence[Repetition], failed: Collection[str] = ()) -> dict[str, float | None]:
    """The flat ``--json`` object: each figure's median over repetitions, with ``_min`` and ``_max`` beside it.

    A figure whose benchmark is in ``failed``, or that no repetition measured (skipped, as the standard
    suite under ``--quick``), is null with its ``_min`` and ``_max``: every key of :data:`JSON_KEYS` is
    always there, and no other.
    """
    out: dict[str, float | None] = {}
    for figure in FIGURES:
        values = [] if figure.benchmark in failed else per_repetition(figure, repetitions)
        middle, low, high = (statistics.median(values), min(values), max(values)) if values else (None, None, None)
        out[figure.key] = _rounded(middle)
        out[f"{figure.key}_min"] = _rounded(low)
        out[f"{figure.key}_max"] = _rounded(high)
    return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS)
