"""What one ``python -m bench`` run is asked to measure (:class:`Plan`) and what it brings back (:class:`Measured`).

Why a budget here: the full run must fit in 10 minutes on a 2-core machine, and the standard suites alone
take about 4 of them. Everything else shares what is left, so the number of repetitions and of samples per
repetition are set together, in one place, where the estimate next to them can be checked against a run:

- per repetition, about 35 s: a bare Envoy's reload floor (~2 s), ``up`` of the demo mesh (~5 s), its
  memory, 20 fault changes and undos (~4 s), 5 net-latency toxics (~5 s), 20 scrapes (~1 s), bare Locust
  and the harness's load for 5 s each (~16 s with Locust's start and stop), ``down`` (~2 s);
- once: the L4 proxies, one 3 s round per repetition each (~20 s), Locust workers (~16 s), the standard
  suites (~240 s).

Three repetitions: about 6.5 minutes in all, which leaves room for a machine slower than the one this was
estimated on. ``--quick`` runs two repetitions with few samples and no standard suite: about a minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.report import Result

__all__ = ["Measured", "Plan", "plan_for"]


@dataclass(frozen=True)
class Plan:
    """Repetitions, and the samples each benchmark takes per repetition."""

    quick: bool
    reps: int
    reload_pairs: int
    """Route-file rewrites 200 -> 503 -> 200 of the bare Envoy: two samples each."""
    activation_changes: int
    """Faults applied and undone: one activation and one rollback sample each."""
    net_changes: int
    scrape_samples: int
    load_s: int
    """Seconds of each Locust run (Locust's ``--run-time`` is whole seconds)."""
    load_users: int
    l4_s: float
    workers_s: float
    suite: bool
    """Whether the standard suites run (not under ``--quick``: they alone take minutes)."""

    def __post_init__(self) -> None:
        if self.reps < 1:
            raise ValueError(f"at least one repetition, got {self.reps}")


def plan_for(quick: bool, reps: int | None = None) -> Plan:
    """The budget of a full or a ``--quick`` run; ``reps`` overrides the number of repetitions only."""
    if quick:
        return Plan(quick=True, reps=reps or 2, reload_pairs=3, activation_changes=5, net_changes=3, scrape_samples=5,
                    load_s=2, load_users=20, l4_s=1.0, workers_s=2.0, suite=False)
    return Plan(quick=False, reps=reps or 3, reload_pairs=10, activation_changes=20, net_changes=5, scrape_samples=20,
                load_s=5, load_users=20, l4_s=3.0, workers_s=4.0, suite=True)


@dataclass
class Measured:
    """The raw outcome of a run, before any figure is computed from it.

    ``repetitions[i]`` holds repetition i's samples by measurement name (see :data:`bench.figures.FIGURES`
    for which figure reads which); a benchmark that failed in any repetition is in ``errors`` with the
    first failure's message, one skipped on purpose in ``skipped`` with the reason. ``extra`` are table
    rows outside the fixed figures (informative only), ``meta`` what the details file records of the run.
    """

    repetitions: list[dict[str, list[float]]]
    errors: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    extra: list[Result] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def empty(cls, reps: int) -> Measured:
        return cls([{} for _ in range(reps)])
