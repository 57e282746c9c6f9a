"""The local meshes' ports: chosen free, below the kernel's ephemeral range, and never one that an earlier
choice for the same mesh holds but has not bound yet (istiod's ports are chosen after the layout's)."""

from __future__ import annotations

from pathlib import Path

from harness.mesh.local.topology import allocate_ports, build_layout
from harness.model.loader import load_environment

REPO = Path(__file__).resolve().parents[3]


def test_ports_are_distinct_and_avoid_what_is_chosen_already() -> None:
    layout = build_layout(load_environment(REPO / "environments" / "local.yaml").model, 100000)
    taken = layout.ports()
    assert len(taken) >= 2 * len(layout.instances)  # every instance's app, inbound and admin port, and more
    for _ in range(20):  # random choices: a clash with the layout's would show within a few tries without avoid
        chosen = allocate_ports(40, avoid=taken)
        assert len(set(chosen)) == 40
        assert not set(chosen) & taken


def test_ports_avoided_are_never_given_even_when_the_low_range_is_all_avoided() -> None:
    """With every low port avoided the kernel picks, and its picks are filtered the same way."""
    avoid = set(range(20000, 33000))
    assert not set(allocate_ports(5, avoid=avoid)) & avoid
