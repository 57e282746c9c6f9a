"""The write-ahead journal that makes rollback survive a crash, and the CLI's pytest-like -k matcher."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from harness._errors import InputError
from harness.cli import keyword_matcher
from harness.model.suite import Experiment, Suite
from harness.runner.journal import Journal, PendingUndo

__all__: list[str] = []


def undo(n: int) -> dict[str, Any]:
    return {"op": "fault-remove", "id": n}


class TestJournal:
    def test_missing_file_has_nothing_pending(self, tmp_path: Path) -> None:
        """A journal that was never written has no pending undo, and creates its directory."""
        journal = Journal(tmp_path / "state" / "journal.jsonl")
        assert journal.pending() == []
        assert (tmp_path / "state").is_dir()

    def test_record_returns_increasing_sequence_numbers(self, tmp_path: Path) -> None:
        """Each record gets the next sequence number, from 1."""
        journal = Journal(tmp_path / "j.jsonl")
        assert [journal.record(f"change {i}", undo(i)) for i in range(3)] == [1, 2, 3]

    def test_pending_is_newest_first(self, tmp_path: Path) -> None:
        """Pending undos come newest first: the order to undo them in."""
        journal = Journal(tmp_path / "j.jsonl")
        for i in range(4):
            journal.record(f"change {i}", undo(i))
        assert [p.seq for p in journal.pending()] == [4, 3, 2, 1]
        assert journal.pending()[0] == PendingUndo(4, undo(3), "change 3")

    def test_done_removes_only_its_entry(self, tmp_path: Path) -> None:
        """Marking 2 done leaves 3 and 1 pending, still newest first."""
        journal = Journal(tmp_path / "j.jsonl")
        for i in range(3):
            journal.record(f"change {i}", undo(i))
        journal.done(2)
        assert [p.seq for p in journal.pending()] == [3, 1]

    def test_sequence_keeps_growing_after_done(self, tmp_path: Path) -> None:
        """A sequence number is never reused while the journal exists, even after its entry is done."""
        journal = Journal(tmp_path / "j.jsonl")
        first = journal.record("a", undo(1))
        journal.done(first)
        assert journal.record("b", undo(2)) == first + 1

    def test_a_second_journal_object_sees_the_same_state(self, tmp_path: Path) -> None:
        """State is on disk: a new Journal on the same file (cleanup after a crash) sees what is pending."""
        Journal(tmp_path / "j.jsonl").record("a", undo(1))
        assert [p.what for p in Journal(tmp_path / "j.jsonl").pending()] == ["a"]

    def test_torn_last_line_is_ignored(self, tmp_path: Path) -> None:
        """A half-written last line (crash mid-write) is ignored; the complete entries are still pending."""
        path = tmp_path / "j.jsonl"
        journal = Journal(path)
        journal.record("a", undo(1))
        with path.open("a") as f:
            f.write('{"seq":2,"type":"do","what":"b","und')
        assert [p.seq for p in journal.pending()] == [1]

    def test_entry_after_a_torn_line_is_kept(self, tmp_path: Path) -> None:
        """A change recorded after a crash left a torn line is still pending (cleanup must undo it)."""
        path = tmp_path / "j.jsonl"
        journal = Journal(path)
        journal.record("a", undo(1))
        with path.open("a") as f:
            f.write('{"seq":2,"type":"do","what":"b","und')
        seq = journal.record("c", undo(3))
        assert seq in [p.seq for p in journal.pending()]

    def test_every_line_is_json(self, tmp_path: Path) -> None:
        """The file is JSON lines with seq/type, 'do' entries carrying what and undo."""
        path = tmp_path / "j.jsonl"
        journal = Journal(path)
        journal.done(journal.record("a", undo(1)))
        entries = [json.loads(line) for line in path.read_text().splitlines()]
        assert entries == [{"seq": 1, "type": "do", "what": "a", "undo": undo(1)}, {"seq": 1, "type": "done"}]

    def test_file_mode_is_0600(self, tmp_path: Path) -> None:
        """The journal is readable by its owner only, whatever the umask."""
        path = tmp_path / "j.jsonl"
        old = os.umask(0)
        try:
            Journal(path).record("a", undo(1))
        finally:
            os.umask(old)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_clear_if_settled_removes_a_settled_journal(self, tmp_path: Path) -> None:
        """When every change is done the file is removed, and a later record starts again at 1."""
        path = tmp_path / "j.jsonl"
        journal = Journal(path)
        journal.done(journal.record("a", undo(1)))
        journal.clear_if_settled()
        assert not path.exists()
        assert journal.record("b", undo(2)) == 1

    def test_clear_if_settled_keeps_pending_work(self, tmp_path: Path) -> None:
        """With something pending the file stays, untouched."""
        path = tmp_path / "j.jsonl"
        journal = Journal(path)
        journal.record("a", undo(1))
        before = path.read_bytes()
        journal.clear_if_settled()
        assert path.read_bytes() == before

    def test_clear_if_settled_without_a_file(self, tmp_path: Path) -> None:
        """clear_if_settled on a journal that was never written does nothing."""
        Journal(tmp_path / "j.jsonl").clear_if_settled()
        assert not (tmp_path / "j.jsonl").exists()

    def test_done_twice_is_harmless(self, tmp_path: Path) -> None:
        """Marking an entry done twice (an idempotent undo replayed) keeps the others pending."""
        journal = Journal(tmp_path / "j.jsonl")
        a, b = journal.record("a", undo(1)), journal.record("b", undo(2))
        journal.done(a)
        journal.done(a)
        assert [p.seq for p in journal.pending()] == [b]


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
        for expr in ("__import__('os')", "a;b", "1+1", "x=1", "'a'"):
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

    def test_matcher_takes_models(self) -> None:
        """The matcher is called with the suite and experiment models."""
        match = keyword_matcher("soak")
        assert match(RETRIES, experiment(RETRIES, "slow-soak"))
        assert not match(RETRIES, experiment(RETRIES, "reviews-aborts-hidden"))
