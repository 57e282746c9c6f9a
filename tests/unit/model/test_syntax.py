"""YAML syntax errors in plain words, at the line to change, with the line shown and a caret under it."""

from __future__ import annotations

import pytest

from harness._errors import InputError
from harness.model.loader import parse_document
from harness.model.syntax import excerpt, source_lines


def refused(text: str) -> tuple[int, int, str]:
    """The (line, column, message) of the single problem ``text`` is refused with."""
    with pytest.raises(InputError) as info:
        parse_document(text, "doc.yaml")
    [problem] = info.value.problems
    return problem.line, problem.col, problem.message


class TestExplained:
    @pytest.mark.parametrize(("text", "line", "fragment"), [
        ("a:\n\tb: 1\n", 2, "YAML does not allow tabs for indentation; use spaces"),
        ("a:\n  b:\n  \tc: 1\n", 3, "YAML does not allow tabs for indentation; use spaces"),
        ("a:\n\t- 1\n", 2, "YAML does not allow tabs for indentation; use spaces"),
        ("a:\t1\n", 1, "a tab cannot separate parts of a line here; use a space"),
    ])
    def test_tabs(self, text: str, line: int, fragment: str) -> None:
        """A tab is named as a tab, on its line."""
        got_line, _, message = refused(text)
        assert (got_line, fragment in message) == (line, True), message

    def test_misindented_key_lists_the_indentations_in_use(self) -> None:
        """A key at 3 spaces between keys at 4 and 2 is told which indentations would fit, and where."""
        line, col, message = refused("spec:\n  defaults:\n    load: 1\n   phases: 2\n")
        assert (line, col) == (4, 4)
        assert "indented by 3 spaces" in message
        assert "4 (line 3), 2 (line 2), 0 (line 1)" in message

    def test_list_item_among_keys(self) -> None:
        """A '- item' at the level of mapping keys says how to make a list the value of a key."""
        line, _, message = refused("a: 1\n- b\n")
        assert line == 2
        assert "end the key with ':'" in message

    def test_key_among_list_items(self) -> None:
        """A key at the level of list items says to start an item or indent the key."""
        line, _, message = refused("- a\nb: 1\n")
        assert line == 2
        assert "start a new item with '- '" in message

    def test_missing_colon_is_reported_on_its_own_line(self) -> None:
        """PyYAML notices a key without ':' on the next line; the user is sent to the line that lacks it."""
        line, col, message = refused("spec:\n  environment local\n  experiments: []\n")
        assert (line, col) == (2, 3)
        assert "write `environment: local`" in message

    def test_unclosed_flow_collection_is_reported_where_it_opens(self) -> None:
        """An unclosed '{' is reported at the '{', not at the end of the file."""
        line, col, message = refused("a: {b: 1\nc: 2\nd: 3\n")
        assert (line, col) == (1, 4)
        assert "add '}'" in message

    def test_two_colons(self) -> None:
        """`signal: a: b` is a value that needs quotes."""
        line, _, message = refused("signal: success_rate: x\n")
        assert line == 1
        assert "Quote the value" in message

    def test_the_offending_line_is_shown_with_a_caret(self) -> None:
        """The message ends with the line, a tab shown as →, and a caret under the column."""
        _, _, message = refused("a:\n  b: 1\n\tc: 2\n")
        assert message.endswith("\n  3 | →c: 2\n    | ^")


class TestExcerpt:
    def test_caret_under_the_column(self) -> None:
        """The caret sits under the reported column."""
        assert excerpt(["key: value"], 1, 6) == "\n  1 | key: value\n    |      ^"

    def test_long_lines_are_cut_around_the_column(self) -> None:
        """A 10 000-character line is cut to a window that still has the caret under the right character."""
        line = "[" * 5000 + "X" + "]" * 5000
        text = excerpt([line], 1, 5001)
        shown, caret = text.split("\n")[1:]
        assert len(shown) < 120
        assert shown[caret.index("^")] == "X"

    def test_control_characters_are_not_sent_to_the_terminal(self) -> None:
        """An escape character from the file is shown as �, never written raw."""
        assert "\x1b" not in excerpt(["a: \x1b[31mred"], 1, 4)

    def test_line_breaks_as_yaml_counts_them(self) -> None:
        """CRLF, CR and NEL are line breaks to PyYAML, so they are to the excerpt too."""
        assert source_lines("a\r\nb\rc\x85d\ne") == ["a", "b", "c", "d", "e"]

    def test_no_excerpt_for_a_line_that_does_not_exist(self) -> None:
        assert excerpt(["a"], 5, 1) == ""
