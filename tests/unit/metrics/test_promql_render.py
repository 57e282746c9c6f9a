"""Rendering the PromQL templates: placeholders filled, Flagger's text kept, mistakes named."""

from __future__ import annotations

import re

import pytest

from harness._errors import InputError
from harness.metrics.promql import FLAGGER, SIGNALS, TEMPLATES, render

NAMES = {"namespace": "shop", "target": "reviews-v2", "service": "reviews"}


@pytest.mark.parametrize("mesh", sorted(TEMPLATES))
def test_every_mesh_names_every_signal_and_leaves_no_placeholder(mesh: str) -> None:
    assert set(TEMPLATES[mesh]) == set(SIGNALS)
    for signal in SIGNALS:
        text = render(mesh, signal, **NAMES)
        assert "{{" not in text
        assert text.count("(") == text.count(")"), text


def test_the_quantile_and_interval_are_filled() -> None:
    text = render("istio", "latency", quantile=0.95, interval="30s", **NAMES)
    assert text.startswith("histogram_quantile(0.95, ")
    assert "[30s]" in text
    assert 'destination_workload=~"reviews-v2"' in text


def test_flaggers_built_ins_are_flaggers_text() -> None:
    """Flagger's istio request-success-rate, placeholders and all (reference/prior-art.md §6)."""
    assert FLAGGER["istio"]["request-success-rate"] == (
        'sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",'
        'destination_workload=~"{{ target }}",response_code!~"5.*"}[{{ interval }}])) / '
        'sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",'
        'destination_workload=~"{{ target }}"}[{{ interval }}])) * 100')
    assert re.search(r"\* 100$", render("linkerd", "request-success-rate", **NAMES))


def test_mistakes_are_named() -> None:
    with pytest.raises(InputError, match="no PromQL templates for mesh 'consul'"):
        render("consul", "latency", **NAMES)
    with pytest.raises(InputError, match="has no template for 'p99'"):
        render("envoy", "p99", **NAMES)
    with pytest.raises(InputError, match="needs target="):
        render("envoy", "throughput")
    with pytest.raises(InputError, match="quantile must be between 0 and 1"):
        render("envoy", "latency", quantile=99, **NAMES)
