"""The timeline picture of one experiment: what an SRE would paste into a postmortem.

Two panels over the experiment's seconds: the client success rate, and latency p50/p99 (log scale);
each fault's time in force shaded, the phases marked at the top, a traffic shift's steps and an abort
drawn as lines. Drawn from the results alone (``ExperimentResult.timeline``, phases, faults, steps), so
a picture can be made again from a results JSON.

matplotlib (Agg, no display) is imported only when a picture is drawn: it is the one heavy import of
the report, and most runs never draw.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from harness.runner.results import ExperimentResult, FaultRecord, PhaseRecord, StepRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["timeline_png", "timeline_png_from_json"]

_FAULT_COLOURS = ("#f4a582", "#92c5de", "#d6c5f0", "#f7e08c", "#b8e186")


def timeline_png(result: ExperimentResult, width_in: float = 10.0) -> bytes | None:
    """The picture as PNG bytes; None when the experiment made no request to draw."""
    points = result.timeline
    if not points:
        return None
    # A bare Figure draws with the Agg canvas by itself: no pyplot, no backend switch for the process
    # (a user's own pyplot in the same pytest session keeps its backend).
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, 5.2), dpi=100, layout="constrained")
    success_ax, latency_ax = figure.subplots(2, 1, sharex=True, height_ratios=(1, 1.3))
    t = [p["t"] + 0.5 for p in points]  # a second's figures drawn at its middle
    success_ax.plot(t, [100 * p["success"] for p in points], color="#1a9850", marker=".", linewidth=1.5)
    success_ax.set_ylabel("success %")
    low = min(100 * p["success"] for p in points)
    success_ax.set_ylim(max(0.0, min(low, 90.0) - 5), 101)
    latency_ax.plot(t, [p["p50_ms"] for p in points], color="#4575b4", label="p50", linewidth=1.5)
    latency_ax.plot(t, [p["p99_ms"] for p in points], color="#d73027", label="p99", linewidth=1.5)
    latency_ax.set_yscale("log")
    latency_ax.set_ylabel("latency ms")
    latency_ax.set_xlabel("seconds from the experiment's start")
    latency_ax.legend(loc="upper right", fontsize="small")
    for ax in (success_ax, latency_ax):
        _mark(ax, result)
        ax.grid(True, alpha=0.3)
    end = max(result.duration_s, t[-1] + 0.5)
    latency_ax.set_xlim(0, end)
    _phases(success_ax, result)
    title = f"{result.name}: {result.verdict}"
    if result.aborted_by:
        title += f" (aborted: {result.aborted_by})"
    figure.suptitle(title, fontsize="medium", color="#b2182b" if result.verdict != "pass" else "#1b7837")
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _mark(ax: Axes, result: ExperimentResult) -> None:
    """Each fault's time in force shaded (a shift's steps each their own), with its kind in the legend."""
    seen: dict[str, str] = {}
    for fault in result.faults:
        colour = seen.setdefault(fault.kind, _FAULT_COLOURS[len(seen) % len(_FAULT_COLOURS)])
        end = fault.removed_at if fault.removed_at is not None else result.duration_s
        ax.axvspan(fault.applied_at, end, color=colour, alpha=0.35, linewidth=0,
                   label=fault.kind if fault.kind not in ax.get_legend_handles_labels()[1] else None)
    for step in result.steps:
        ax.axvline(step.start, color="#762a83", linestyle=":", linewidth=1)
    for n, mark in enumerate(result.marks):
        ax.axvline(float(mark["t"]), color="#1b7837", linestyle="-.", linewidth=1,
                   label="certificate stage" if n == 0 and "certificate stage" not in ax.get_legend_handles_labels()[1]
                   else None)
    if result.aborted_by and "fault" in result.phases:
        ax.axvline(result.phases["fault"].end, color="#b2182b", linewidth=2, label="abort")


def _phases(ax: Axes, result: ExperimentResult) -> None:
    """Phase names over the top panel, with a line where each starts; steps named by their number."""
    for name, phase in result.phases.items():
        ax.axvline(phase.start, color="#555555", linewidth=0.8)
        ax.text(phase.start + 0.1, 1.02, name, transform=ax.get_xaxis_transform(), fontsize="small",
                color="#333333", va="bottom")
    for step in result.steps:
        ax.text(step.start + 0.1, 0.04, f"step {step.step}", transform=ax.get_xaxis_transform(),
                fontsize="x-small", color="#762a83")
    # The stage's name beside its line ("certificates: overlap" -> "overlap"), a row higher when it
    # follows the previous one closely (an undo's stages come a few tenths of a second apart).
    row, last = 0, -1e9
    span = max(result.duration_s, 1.0)
    for mark in result.marks:
        t = float(mark["t"])
        row = (row + 1) % 4 if t - last < span / 12 else 0
        last = t
        ax.text(t + 0.1, 0.14 + 0.1 * row, str(mark["label"]).removeprefix("certificates: "),
                transform=ax.get_xaxis_transform(), fontsize="x-small", color="#1b7837")
    if any(True for _ in result.faults):
        ax.legend(loc="lower left", fontsize="small")


def timeline_png_from_json(experiment: dict[str, Any]) -> bytes | None:
    """The picture of one experiment of a results JSON (``run --results``): the same drawing, made again
    from the file alone."""
    shift = experiment.get("shift") or {}
    result = ExperimentResult(
        experiment["name"], experiment["verdict"], experiment.get("duration_s", 0.0),
        phases={k: PhaseRecord(v["start"], v["end"], v["requests"]) for k, v in experiment.get("phases", {}).items()},
        faults=[FaultRecord(f["kind"], f["description"], f["applied_at"], f.get("removed_at"), f.get("activation_ms"))
                for f in experiment.get("faults", [])],
        aborted_by=experiment.get("aborted_by"),
        marks=[m for m in experiment.get("marks", []) if isinstance(m, dict) and "t" in m],
        steps=[StepRecord(st["step"], st["split"], st["start"], st["end"], st["requests"])
               for st in shift.get("steps", [])],
        timeline=experiment.get("timeline", []),
    )
    return timeline_png(result)
