"""The write-ahead journal that makes rollback survive a crash, and the CLI's pytest-like -k matcher."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

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
