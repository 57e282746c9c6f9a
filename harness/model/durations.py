"""Durations as users write them (``250ms``, ``10s``, ``2m``, ``1m30s``), held as float seconds.

A unit is mandatory: a bare ``10`` is ambiguous between seconds and milliseconds, and guessing wrong
turns a 10 s fault phase into a 10 ms one. Go's and Istio's compound spelling (``1h30m``, ``1m30s``,
``1.5s``) is accepted because users copy durations out of VirtualServices and Envoy configs; its units
must come in descending order, each at most once, so that ``30s1m`` (probably a typo) is refused
rather than silently read as 90 s. Whatever is refused gets a message that says what to write instead.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

__all__ = ["DURATION_PATTERN", "MAX_DURATION_S", "Duration", "format_compound", "format_duration", "nonzero",
           "parse_duration"]

_NUMBER = r"(?:\d+(?:\.\d+)?|\.\d+)"
DURATION_PATTERN = (
    rf"^(?=[.\d])(?:{_NUMBER}h)?(?:{_NUMBER}m(?!s))?(?:{_NUMBER}s)?(?:{_NUMBER}ms)?"
    rf"(?:{_NUMBER}(?:us|µs|μs))?(?:{_NUMBER}ns)?$"
)
"""One or more ``NUMBER UNIT`` parts, units in descending order (h, m, s, ms, us/µs, ns), no spaces.

The JSON Schema carries this pattern, so an editor flags the same strings the loader refuses."""

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9}
_RANK = {"h": 0, "m": 1, "s": 2, "ms": 3, "us": 4, "µs": 4, "μs": 4, "ns": 5}
_PART = re.compile(rf"({_NUMBER})(ns|us|µs|μs|ms|s|m|h)")
_RE = re.compile(DURATION_PATTERN)

MAX_DURATION_S = 315_576_000_000.0
"""10000 years, the largest duration Envoy's and Istio's protobuf ``Duration`` can hold. Nothing in a
suite means more; beyond it (or ``1e400s``-like digit strings that overflow to infinity) a value could
only crash whatever converts it later, so it is refused here."""

_WORDS = {
    "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "min": "m", "mins": "m", "minute": "m", "minutes": "m",
    "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "msec": "ms", "msecs": "ms", "millis": "ms", "millisecond": "ms", "milliseconds": "ms",
}
"""Spelled-out units users write, mapped to the unit to suggest instead."""


def _suggestion(value: str) -> str | None:
    """What the user probably meant by a string that is not a duration, when that can be guessed."""
    squeezed = "".join(value.split())
    if squeezed != value and _RE.match(squeezed):
        return squeezed
    word = re.fullmatch(rf"\s*({_NUMBER})\s*([A-Za-z]+)\s*", value)
    if word and word.group(2).lower() in _WORDS:
        return word.group(1) + _WORDS[word.group(2).lower()]
    if word and word.group(2) != word.group(2).lower() and _RE.match(squeezed.lower()):
        return squeezed.lower()
    return None


def parse_duration(value: Any) -> float:
    """Parse ``250ms`` / ``10s`` / ``2m`` / ``1h30m`` into seconds; refuse anything else with a hint."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '10s' or '250ms', got {str(value).lower()}")
    if isinstance(value, int | float):
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        raise ValueError(f"a duration needs a unit: write '{shown}s' or '{shown}ms', not {shown}")
    if not isinstance(value, str):
        # A type of its own, so that where a duration OR a mapping is allowed (phases), the mapping
        # branch's precise errors win over this one.
        raise PydanticCustomError("duration_type", "expected a duration like '10s' or '250ms', got {kind}",
                                  {"kind": type(value).__name__})
    if _RE.match(value):
        parts = _PART.findall(value)
        seconds = math.fsum(float(number) * _UNITS[unit] for number, unit in parts)
        if not seconds <= MAX_DURATION_S:
            shown = value if len(value) <= 40 else value[:37] + "..."
            raise ValueError(f"'{shown}' is longer than any duration a mesh can represent (10000 years): "
                             "write a realistic length, e.g. 30s or 10m")
        return seconds
    raise ValueError(_refusal(value))


def _refusal(raw: str) -> str:
    """Why ``raw`` is not a duration, and what to write instead."""
    value = raw if len(raw) <= 40 else raw[:37] + "..."
    stripped = raw.strip()
    if not stripped:
        return "a duration cannot be empty: write a number and a unit, e.g. '10s'"
    if stripped.startswith("-"):
        return f"a duration cannot be negative ('{value}'): write e.g. '{stripped[1:][:40]}' or '0s'"
    if stripped.startswith("+") and _RE.match(stripped[1:]):
        return f"write '{stripped[1:]}' without the '+'"
    guess = _suggestion(raw)
    if guess:
        what = "without spaces" if "".join(raw.split()) == guess else "instead"
        return f"'{value}' is not a duration: write '{guess}' {what}"
    parts = _PART.findall(stripped)
    if parts and "".join(n + u for n, u in parts) == stripped:
        units = [u for _, u in parts]
        ordered = sorted(parts, key=lambda p: _RANK[p[1]])
        if len({_RANK[u] for u in units}) < len(units):
            return f"'{value}' names a unit twice: write each unit once, e.g. '1m30s'"
        return (f"'{value}': write the units of a compound duration from largest to smallest, "
                f"'{''.join(n + u for n, u in ordered)}'")
    if re.fullmatch(rf"{_NUMBER}", stripped):
        return f"a duration needs a unit: write '{stripped}s' or '{stripped}ms', not '{value}'"
    return (f"'{value}' is not a duration: write a number and a unit (h, m, s, ms, us), e.g. '250ms', "
            "'10s', '2m' or '1m30s'")


def format_duration(seconds: float) -> str:
    """The shortest rendering that reads back as the same duration, for plans, messages and state files.

    Never in exponent form (``1e-06ms`` is not a duration a user can write back), and exact to the
    nanosecond: policies are stored as text and parsed again.
    """
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{_plain(seconds * 1000)}ms"
    if seconds >= 7200 and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f}h"
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:.0f}m"
    return f"{_plain(seconds)}s"


def _plain(value: float) -> str:
    """``value`` in positional notation, trailing zeros dropped (``0.000001``, ``1000001``, ``1.2345678``)."""
    return f"{value:.9f}".rstrip("0").rstrip(".")


def format_compound(seconds: float) -> str:
    """A length as ``1h30m``, ``58m50s`` or ``250ms``: for messages about long totals, where ``3530s``
    would make the user do the arithmetic. Sub-second remainders of long values are dropped."""
    if seconds < 60:
        return format_duration(seconds)
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n) or "0s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["250ms", "10s", "2m"]}),
]


def nonzero(message: str) -> AfterValidator:
    """A check for a duration whose zero means nothing (a hold of 0s, a latency of 0s): refuse it with
    ``message`` (why zero is meaningless there and what to write), instead of letting it silently do
    nothing."""
    def check(seconds: float) -> float:
        if seconds <= 0:
            raise ValueError(message)
        return seconds
    return AfterValidator(check)
