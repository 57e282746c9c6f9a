"""Reading the journal back: a line torn by a crash is skipped, any other damage is StateCorrupt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness._errors import StateCorrupt
from harness.runner.journal import Journal

__all__: list[str] = []


def undo(n: int) -> dict[str, Any]:
    return {"op": "runtime-clear", "nodes": [f"reviews-v{n}-0"], "keys": ["harness.fault.abort"]}


def journal_with(tmp_path: Path, *lines: str) -> Journal:
    """A journal with two good entries, then ``lines``, then one more good entry."""
    journal = Journal(tmp_path / "journal.jsonl")
    journal.record("a", undo(1))
    journal.done(journal.record("b", undo(2)))
    last = json.dumps({"seq": 3, "type": "do", "what": "c", "undo": undo(3)}, separators=(",", ":"))
    with journal.path.open("a") as f:
        f.writelines(line + "\n" for line in [*lines, last])
    return journal


def assert_names_file_and_remedy(exc: StateCorrupt, journal: Journal) -> None:
    assert exc.exit_code == 3
    assert exc.path == str(journal.path)
    assert str(journal.path) in str(exc)
    assert "mesh-harness down --env FILE" in str(exc)
    assert "remove the file" in str(exc)


CORRUPT_LINES = {
    "json-list": ("[1, 2]", "line 4 is JSON but not a journal entry"),
    "json-null": ("null", "JSON but not a journal entry"),
    "do-without-undo": ('{"seq":9,"type":"do","what":"x"}', "undo: missing"),
    "undo-without-op": ('{"seq":9,"type":"do","what":"x","undo":{}}', "'op'"),
    "undo-not-an-object": ('{"seq":9,"type":"do","what":"x","undo":[1]}', "undo"),
    "seq-as-text": ('{"seq":"9","type":"done"}', "seq"),
    "seq-zero": ('{"seq":0,"type":"done"}', "seq"),
    "unknown-type": ('{"seq":9,"type":"maybe"}', "neither 'do' nor 'done'"),
    "no-type": ('{"seq":9}', "no 'type'"),
    "unknown-key": ('{"seq":9,"type":"done","by":"me"}', "by: unexpected key"),
    "text": ("hello", "line 4 is not a JSON entry"),
    "broken-mid-line": ('{"seq":9,"type":"done" oops}', "not a JSON entry"),
    "broken-literal": ('{"seq":9,"type":"do","what":"x","undo":{"op":"x","previous":nul}}', "not a JSON entry"),
}


class TestCorruptJournal:
    @pytest.mark.parametrize("case", sorted(CORRUPT_LINES))
    def test_corrupt_line_in_the_middle(self, tmp_path: Path, case: str) -> None:
        """A damaged line between good entries is StateCorrupt naming the line, the file and the remedy."""
        line, problem = CORRUPT_LINES[case]
        journal = journal_with(tmp_path, line)
        with pytest.raises(StateCorrupt) as info:
            journal.pending()
        assert problem in str(info.value)
        assert_names_file_and_remedy(info.value, journal)

    @pytest.mark.parametrize("case", ["json-list", "text", "broken-mid-line"])
    def test_corrupt_last_line_is_not_mistaken_for_a_torn_one(self, tmp_path: Path, case: str) -> None:
        """A damaged last line that is no prefix of an entry is StateCorrupt, not skipped as torn."""
        journal = Journal(tmp_path / "journal.jsonl")
        journal.record("a", undo(1))
        with journal.path.open("a") as f:
            f.write(CORRUPT_LINES[case][0])
        with pytest.raises(StateCorrupt) as info:
            journal.pending()
        assert_names_file_and_remedy(info.value, journal)

    def test_not_ascii(self, tmp_path: Path) -> None:
        """Bytes the harness never writes (it writes ASCII JSON) are StateCorrupt, not a decode error."""
        journal = journal_with(tmp_path)
        with journal.path.open("ab") as f:
            f.write(b"\xff\xfe\x00\n")
        with pytest.raises(StateCorrupt, match="not text written by mesh-harness") as info:
            journal.pending()
        assert_names_file_and_remedy(info.value, journal)

    def test_same_change_recorded_twice(self, tmp_path: Path) -> None:
        """Two 'do' entries with one sequence number make 'done' ambiguous: StateCorrupt."""
        journal = journal_with(tmp_path, json.dumps({"seq": 1, "type": "do", "what": "again", "undo": undo(9)},
                                                    separators=(",", ":")))
        with pytest.raises(StateCorrupt, match="records change 1 a second time") as info:
            journal.pending()
        assert_names_file_and_remedy(info.value, journal)

    def test_directory(self, tmp_path: Path) -> None:
        """A directory where the journal should be is StateCorrupt on read and on write."""
        journal = Journal(tmp_path / "journal.jsonl")
        journal.path.mkdir()
        with pytest.raises(StateCorrupt, match="is a directory") as info:
            journal.pending()
        assert_names_file_and_remedy(info.value, journal)
        with pytest.raises(StateCorrupt, match="cannot be written"):
            journal.done(1)

    def test_unreadable(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A journal that cannot be read (permissions) is StateCorrupt saying why."""
        journal = journal_with(tmp_path)
        real = Path.read_bytes

        def denied(path: Path) -> bytes:
            if path == journal.path:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(Path, "read_bytes", denied)
        with pytest.raises(StateCorrupt, match="Permission denied") as info:
            journal.pending()
        assert_names_file_and_remedy(info.value, journal)

    def test_record_refuses_to_append_to_a_corrupt_journal(self, tmp_path: Path) -> None:
        """record reads the journal first, so a new change is never journalled after damage."""
        journal = journal_with(tmp_path, "[1]")
        before = journal.path.read_bytes()
        with pytest.raises(StateCorrupt):
            journal.record("d", undo(4))
        assert journal.path.read_bytes() == before


class TestTornLines:
    ENTRIES = (
        {"seq": 12, "type": "do", "what": "http-abort {'service': 'ratings'} é",
         "undo": {"op": "policy-restore", "caller": "a", "callee": "b", "previous": None, "n": -1.5e-3,
                  "flags": [True, False]}},
        {"seq": 3, "type": "done"},
    )

    @pytest.mark.parametrize("entry", ENTRIES, ids=["do", "done"])
    def test_every_prefix_of_an_entry_is_torn_at_the_end(self, tmp_path: Path, entry: dict[str, Any]) -> None:
        """Whatever prefix of an entry a crash left as the last line, the complete entries stay pending."""
        full = json.dumps(entry, separators=(",", ":"))
        for cut in range(1, len(full)):
            journal = Journal(tmp_path / f"j{cut}.jsonl")
            journal.record("a", undo(1))
            with journal.path.open("a") as f:
                f.write(full[:cut])
            assert [p.seq for p in journal.pending()] == [1], full[:cut]

    @pytest.mark.parametrize("entry", ENTRIES, ids=["do", "done"])
    def test_every_prefix_of_an_entry_is_torn_in_the_middle(self, tmp_path: Path, entry: dict[str, Any]) -> None:
        """A torn line the next append ended (so it sits in the middle) is still skipped, not corruption."""
        full = json.dumps(entry, separators=(",", ":"))
        for cut in range(1, len(full), 7):
            journal = Journal(tmp_path / f"j{cut}.jsonl")
            journal.record("a", undo(1))
            with journal.path.open("a") as f:
                f.write(full[:cut])
            journal.record("b", undo(2))
            assert [p.seq for p in journal.pending()] == [2, 1], full[:cut]

    def test_blank_lines_are_ignored(self, tmp_path: Path) -> None:
        """Empty lines hold no record and are not corruption."""
        journal = journal_with(tmp_path, "", "   ")
        assert [p.what for p in journal.pending()] == ["c", "a"]
