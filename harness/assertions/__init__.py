"""Expectations: each kind turns windowed evidence into a verdict with an interval and a sentence."""

from __future__ import annotations

from harness.assertions.base import Outcome, VerdictName, bound_verdict
from harness.assertions.evidence import Evidence, WindowEvidence
from harness.assertions.registry import SUPPORTED_KINDS, evaluate

__all__ = ["SUPPORTED_KINDS", "Evidence", "Outcome", "VerdictName", "WindowEvidence", "bound_verdict",
           "evaluate"]
