"""``-k``: pytest's keyword grammar over suite names, experiment names and tags, without eval."""

from __future__ import annotations

import pytest

from harness._errors import InputError
from harness.model.suite import Experiment, Suite
from harness.runner.select import keyword_matcher


# ------------------------------------------------------------------------------------------- -k
def suite(name: str, *experiments: tuple[str, list[str]]) -> Suite:
    return Suite.model_validate({
        "apiVersion": "harness/v1", "kind": "Suite", "metadata": {"name": name},
        "spec": {"experiments": [{"name": n, "tags": tags} for n, tags in experiments]},
    })


RETRIES = suite("retries", ("reviews-aborts-hidden", ["ci"]), ("ratings-delay-latency", ["ci", "latency"]),
                ("slow-soak", ["nightly"]))
SPLIT = suite("traffic-split", ("reviews-split-holds", ["ci"]))


def selected(expr: str | None) -> list[str]:
    match = keyword_matcher(expr)
    return [f"{s.metadata.name}::{e.name}" for s in (RETRIES, SPLIT) for e in s.spec.experiments if match(s, e)]


def experiment(s: Suite, name: str) -> Experiment:
    return next(e for e in s.spec.experiments if e.name == name)


class TestKeywordMatcher:
    def test_no_expression_selects_everything(self) -> None:
        """Without -k (None or empty) every experiment runs."""
        assert len(selected(None)) == len(selected("")) == 4

    def test_substring_of_experiment_name(self) -> None:
        """A word selects experiments whose name contains it."""
        assert selected("reviews") == ["retries::reviews-aborts-hidden", "traffic-split::reviews-split-holds"]

    def test_substring_of_suite_name(self) -> None:
        """The suite name is matched too: 'traffic' selects the whole traffic-split suite."""
        assert selected("traffic") == ["traffic-split::reviews-split-holds"]

    def test_tag(self) -> None:
        """A tag is matched: 'nightly' selects the one experiment tagged so."""
        assert selected("nightly") == ["retries::slow-soak"]

    def test_case_insensitive(self) -> None:
        """Matching ignores case, as pytest -k does."""
        assert selected("REVIEWS") == selected("reviews")

    def test_and(self) -> None:
        """'ci and latency' needs both."""
        assert selected("ci and latency") == ["retries::ratings-delay-latency"]

    def test_or(self) -> None:
        """'nightly or split' takes either."""
        assert selected("nightly or split") == ["retries::slow-soak", "traffic-split::reviews-split-holds"]

    def test_not(self) -> None:
        """'not ci' excludes everything tagged ci."""
        assert selected("not ci") == ["retries::slow-soak"]

    def test_parentheses_and_precedence(self) -> None:
        """'not' binds tighter than 'and', which binds tighter than 'or'; parentheses override."""
        assert selected("retries and not latency or split") == [
            "retries::reviews-aborts-hidden", "retries::slow-soak", "traffic-split::reviews-split-holds"]
        assert selected("retries and not (latency or soak)") == ["retries::reviews-aborts-hidden"]
        assert selected("(reviews)and(split)") == ["traffic-split::reviews-split-holds"]

    def test_no_match(self) -> None:
        """A word that matches nothing selects nothing."""
        assert selected("canary") == []

    def test_keywords_cannot_inject_code(self) -> None:
        """Python syntax in -k is refused, never evaluated."""
        for expr in ("__import__('os')", "a;b", "x=1", "'a'", "a,b"):
            with pytest.raises(InputError):
                selected(expr)

    @pytest.mark.parametrize("expr", ["and", "ci and", "not", "(ci", "ci)", "ci latency", "or ci"])
    def test_malformed_expressions_are_input_errors(self, expr: str) -> None:
        """An expression that does not parse is an InputError naming it."""
        with pytest.raises(InputError, match="-k"):
            selected(expr)

    def test_empty_parentheses_are_an_input_error(self) -> None:
        """'()' is not an expression (pytest refuses it too)."""
        with pytest.raises(InputError, match="-k"):
            selected("()")

    def test_pytest_identifier_characters(self) -> None:
        """Words may hold what pytest's -k grammar allows in an identifier (: - . [ ] + / \\)."""
        assert selected("retries::slow-soak") == []
        assert selected("slow-soak") == ["retries::slow-soak"]
        assert selected("1+1") == []

    def test_deep_not_chain_is_a_clear_error(self) -> None:
        """A 'not not … ci' chain deeper than MAX_DEPTH is an InputError, not a RecursionError."""
        with pytest.raises(InputError, match="nested deeper"):
            selected("not " * 5000 + "ci")
        assert selected("not " * 10 + "ci") == selected("ci")

    def test_deep_parentheses_are_a_clear_error(self) -> None:
        """Thousands of parentheses are an InputError; a few are fine."""
        with pytest.raises(InputError, match="nested deeper"):
            selected("(" * 5000 + "ci" + ")" * 5000)
        assert selected("(((ci)))") == selected("ci")

    def test_error_names_the_column(self) -> None:
        """The message says where the expression went wrong."""
        with pytest.raises(InputError, match="unexpected '\\)' at column 4"):
            selected("ci ) x")

    def test_matcher_takes_models(self) -> None:
        """The matcher is called with the suite and experiment models."""
        match = keyword_matcher("soak")
        assert match(RETRIES, experiment(RETRIES, "slow-soak"))
        assert not match(RETRIES, experiment(RETRIES, "reviews-aborts-hidden"))
