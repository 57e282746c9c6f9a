"""Durations: the spellings accepted (ours, Go's and Istio's), and what a refused one is told to write."""

from __future__ import annotations

import re

import pytest

from harness.model.durations import DURATION_PATTERN, MAX_DURATION_S, format_compound, parse_duration


class TestAccepted:
    @pytest.mark.parametrize(("text", "seconds"), [
        ("250ms", 0.25), ("10s", 10.0), ("2m", 120.0), ("1h", 3600.0), ("1.5s", 1.5), (".5s", 0.5),
        ("1m30s", 90.0), ("1h30m", 5400.0), ("1h2m3s4ms", 3723.004), ("2m0.5s", 120.5), ("100us", 1e-4),
        ("100µs", 1e-4), ("100μs", 1e-4), ("5ns", 5e-9), ("0s", 0.0),
    ])
    def test_parsed_to_seconds(self, text: str, seconds: float) -> None:
        """Our units, and Go's compound form with units from largest to smallest."""
        assert parse_duration(text) == pytest.approx(seconds)

    @pytest.mark.parametrize("text", ["250ms", "1m30s", "1h30m", "1.5s", "10s", "5µs", "0s"])
    def test_the_schema_pattern_accepts_what_the_loader_accepts(self, text: str) -> None:
        """Editors (through the JSON Schema pattern) and the loader agree."""
        assert re.match(DURATION_PATTERN, text)


class TestRefused:
    @pytest.mark.parametrize(("value", "fragment"), [
        ("10 s", "write '10s' without spaces"),
        ("1m 30s", "write '1m30s' without spaces"),
        ("10s ", "write '10s' without spaces"),
        ("30s1m", "'1m30s'"),
        ("1m1m", "names a unit twice"),
        ("-5s", "cannot be negative"),
        ("+5s", "write '5s' without the '+'"),
        ("10sec", "write '10s' instead"),
        ("10 seconds", "write '10s' instead"),
        ("2 hours", "write '2h' instead"),
        ("10S", "write '10s' instead"),
        ("10", "write '10s' or '10ms'"),
        ("", "cannot be empty"),
        ("soon", "write a number and a unit"),
        (10, "write '10s' or '10ms'"),
        (1.5, "write '1.5s' or '1.5ms'"),
        (True, "like '10s'"),
        ("9" * 400 + "h", "write a realistic length"),
    ])
    def test_refusal_says_what_to_write(self, value: object, fragment: str) -> None:
        """Every refused spelling gets a message that names the spelling to use."""
        with pytest.raises(ValueError, match=re.escape(fragment)):
            parse_duration(value)

    @pytest.mark.parametrize("text", ["10 s", "30s1m", "1m1m", "-5s", "10", "1e3ms", "1.s"])
    def test_the_schema_pattern_refuses_what_the_loader_refuses(self, text: str) -> None:
        """An editor flags the same strings the loader refuses."""
        assert not re.match(DURATION_PATTERN, text)

    def test_the_cap_is_what_protobuf_durations_hold(self) -> None:
        """10000 years is accepted, a second more is not: beyond it Envoy's Duration cannot say it."""
        assert parse_duration(f"{int(MAX_DURATION_S)}s") == MAX_DURATION_S
        with pytest.raises(ValueError, match="longer than any duration"):
            parse_duration(f"{int(MAX_DURATION_S) + 1}s")


@pytest.mark.parametrize(("seconds", "text"), [
    (0.25, "250ms"), (10, "10s"), (90, "1m30s"), (3540, "59m"), (3600, "1h"), (3530, "58m50s"),
    (359996410, "99999h10s"),
])
def test_format_compound(seconds: float, text: str) -> None:
    """Long lengths in messages read as a user writes them, and parse back to the same length."""
    assert format_compound(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
