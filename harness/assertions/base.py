"""What every expectation returns, and the rule that turns an interval and a bound into a verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["Outcome", "VerdictName", "bound_verdict", "percent"]

VerdictName = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class Outcome:
    """The verdict of one expectation, with the numbers behind it and one sentence that explains it."""

    kind: str
    verdict: VerdictName
    observed: float | None
    interval: tuple[float, float] | None
    samples: int
    expected: str
    message: str
    id: str | None = None
    details: dict[str, Any] | None = None
    confidence: float | None = None
    """The confidence of ``interval`` (the suite's, or less error per look in an adaptive phase)."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["interval"] = list(self.interval) if self.interval else None
        if data["id"] is None:
            del data["id"]
        if data["details"] is None:
            del data["details"]
        if data["confidence"] is None:
            del data["confidence"]
        return data


def bound_verdict(interval: tuple[float, float], low: float | None, high: float | None) -> VerdictName:
    """Pass when the whole interval meets the bound, fail when none of it does, else inconclusive."""
    lo, hi = interval
    verdicts: list[VerdictName] = []
    if low is not None:
        verdicts.append("pass" if lo >= low else "fail" if hi < low else "inconclusive")
    if high is not None:
        verdicts.append("pass" if hi <= high else "fail" if lo > high else "inconclusive")
    if "fail" in verdicts:
        return "fail"
    if "inconclusive" in verdicts:
        return "inconclusive"
    return "pass"


def percent(confidence: float) -> str:
    """A confidence as a percentage with the digits it needs: ``99%``, ``99.9%``, ``99.86%`` (never a
    rounded-up ``100%`` for the per-look confidence of an adaptive phase)."""
    digits = 4
    while digits < 12 and confidence < 1 and float(f"{100 * confidence:.{digits}g}") >= 100:
        digits += 1
    return f"{100 * confidence:.{digits}g}%"
