"""Durations as users write them (``250ms``, ``10s``, ``2m``), held as float seconds.

A unit is mandatory: a bare ``10`` is ambiguous between seconds and milliseconds, and guessing wrong
turns a 10 s fault phase into a 10 ms one.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

__all__ = ["DURATION_PATTERN", "Duration", "format_duration", "parse_duration"]

DURATION_PATTERN = r"^\s*(\d+(\.\d+)?|\.\d+)\s*(us|µs|ms|s|m|h)\s*$"
_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_RE = re.compile(DURATION_PATTERN)


def parse_duration(value: Any) -> float:
    """Parse ``250ms`` / ``10s`` / ``2m`` / ``1h`` into seconds; reject bare numbers with a hint."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '10s' or '250ms', got {value!r}")
    if isinstance(value, int | float):
        raise ValueError(f"a duration needs a unit: write '{value}s' or '{value}ms', not {value}")
    if not isinstance(value, str):
        # A type of its own, so that where a duration OR a mapping is allowed (phases), the mapping
        # branch's precise errors win over this one.
        raise PydanticCustomError("duration_type", "expected a duration like '10s' or '250ms', got {kind}",
                                  {"kind": type(value).__name__})
    match = _RE.match(value)
    if not match:
        raise ValueError(f"'{value}' is not a duration: write a number and a unit, e.g. '250ms', '10s', '2m'")
    return float(match.group(1)) * _UNITS[match.group(3)]


def format_duration(seconds: float) -> str:
    """The shortest exact-ish rendering, for plans and messages."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms"
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["250ms", "10s", "2m"]}),
]
