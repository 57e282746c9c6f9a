"""YAML syntax errors in plain words: what is wrong, where, and what to write instead.

PyYAML reports the state of its parser ("expected <block end>, but found '<block mapping start>'"),
which is accurate and useless to someone who mis-indented one key. This module turns each of the
errors users actually meet (tabs, indentation, a missing colon, an unclosed bracket or quote, an
unknown alias) into a sentence about their file, located at the line to change, which is not always
the line PyYAML stopped at: a key without a colon is only noticed on the next line, and an unclosed
``{`` at the end of the file. :func:`excerpt` shows that line with a caret under the column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

__all__ = ["Explained", "excerpt", "explain", "source_lines"]

_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
"""What PyYAML counts as a line break (YAML 1.1), so line numbers here and in its marks agree."""

_TOKEN_WORDS = {
    "<block end>": "the end of the indented block",
    "<block mapping start>": "a key",
    "<block sequence start>": "a list item",
    "<stream end>": "the end of the file",
    "<scalar>": "a value",
    "<document start>": "'---'",
    "?": "a key",
    "-": "a list item",
}


@dataclass(frozen=True)
class Explained:
    """A YAML error as the user should read it: 1-based line and column, and the message."""

    line: int
    col: int
    message: str


def source_lines(text: str) -> list[str]:
    """The lines of ``text`` as PyYAML numbers them."""
    return _BREAKS.split(text)


def excerpt(lines: list[str], line: int, col: int, width: int = 100) -> str:
    """``line`` (1-based) of the source with a caret under ``col``, ready to append to a message.

    Tabs are shown as ``→`` and other unprintable characters as ``�`` so the caret stays aligned and a
    terminal is never sent a control sequence from the file; long lines are cut around the column.
    """
    if not 1 <= line <= len(lines):
        return ""
    text = "".join("→" if c == "\t" else (c if c.isprintable() else "\ufffd") for c in lines[line - 1])
    at = max(col - 1, 0)
    if len(text) > width:
        start = max(0, min(at - width // 2, len(text) - width))
        text = ("…" if start else "") + text[start:start + width] + ("…" if start + width < len(text) else "")
        at = at - start + (1 if start else 0)
    number = str(line)
    return f"\n  {number} | {text}\n  {' ' * len(number)} | {' ' * at}^"


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _key_column(text: str) -> int:
    """Where the first key of a line starts: after its indentation and any list dashes (``- a: 1`` → 2)."""
    at = _indent(text)
    while text[at:at + 2] == "- ":
        at += 2
        at += len(text[at:]) - len(text[at:].lstrip(" "))
    return at


def _content(lines: list[str], index: int) -> bool:
    stripped = lines[index].strip()
    return bool(stripped) and not stripped.startswith("#")


def _previous(lines: list[str], index: int) -> int | None:
    """The nearest line above ``index`` (0-based) that holds something other than a comment."""
    for i in range(min(index, len(lines)) - 1, -1, -1):
        if _content(lines, i):
            return i
    return None


def _levels(lines: list[str], index: int) -> list[tuple[int, int]]:
    """Indentations a line at ``index`` could line up with: (spaces, 1-based line it comes from).

    Walking up, the first line above is a possible sibling, and each line less indented than every line
    seen so far is an enclosing block; for a list item (``- key: v``) both the dash and the key count.
    """
    found: dict[int, int] = {}
    lowest: int | None = None
    for i in range(min(index, len(lines)) - 1, -1, -1):
        if not _content(lines, i):
            continue
        text = lines[i]
        spaces = _indent(text)
        if lowest is not None and spaces >= lowest:
            continue
        lowest = spaces
        found.setdefault(spaces, i + 1)
        rest = text[spaces:]
        while rest.startswith("- ") or rest == "-":
            inner = len(text) - len(rest[1:].lstrip(" "))
            found.setdefault(inner, i + 1)
            rest = rest[1:].lstrip(" ")
        if spaces == 0:
            break
    return sorted(found.items(), reverse=True)


def _colon_fix(text: str) -> str | None:
    """``kind Suite`` → ``kind: Suite``; ``a:1`` → ``a: 1``; ``None`` when no fix is obvious."""
    body = text.strip()
    prefix = ""
    while body.startswith("- "):
        prefix += "- "
        body = body[2:].lstrip()
    if not body or body[0] in "[{'\"#&*!|>":
        return None
    glued = re.match(r"^([^\s:]+):(\S.*)$", body)
    if glued and ": " not in body:
        return f"{prefix}{glued.group(1)}: {glued.group(2)}"
    if ":" in body:
        return None
    parts = body.split(None, 1)
    return f"{prefix}{parts[0]}: {parts[1]}" if len(parts) == 2 else f"{prefix}{parts[0]}: ..."


def _missing_colon(lines: list[str], index: int) -> Explained | None:
    """The line at ``index`` is a key without ``': '`` (or with ``:`` glued to its value)."""
    text = lines[index]
    fix = _colon_fix(text)
    if fix is None:
        return None
    glued = re.search(r"[^\s:]:\S", text)
    if glued and ": " not in text.strip():
        return Explained(index + 1, glued.start() + 2,
                         f"a ':' after a key must be followed by a space: write `{fix}`")
    return Explained(index + 1, _indent(text) + 1,
                     f"this line has no ':' after its key, so YAML reads it together with the next line; "
                     f"write `{fix}`")


def _tab(lines: list[str], line: int, col: int) -> Explained:
    text = lines[line] if line < len(lines) else ""
    leading = text[:len(text) - len(text.lstrip(" \t-"))]
    if "\t" in leading:
        return Explained(line + 1, leading.index("\t") + 1,
                         "YAML does not allow tabs for indentation; use spaces (e.g. 2 per level)")
    return Explained(line + 1, col + 1, "a tab cannot separate parts of a line here; use a space")


def _block_end(lines: list[str], line: int, found: str, exc: yaml.MarkedYAMLError) -> Explained:
    """``expected <block end>``: a line whose indentation fits no block above it, or a stray bracket."""
    text = lines[line] if line < len(lines) else ""
    col = _indent(text) + 1
    if found in ("]", "}"):
        opener = "[" if found == "]" else "{"
        at = text.find(found)
        return Explained(line + 1, at + 1 if at >= 0 else col,
                         f"a '{found}' with no '{opener}' open before it: remove it, or add the '{opener}' it "
                         "should close")
    item = text.lstrip(" ").startswith("-")
    what = "list item" if item else ("key" if ":" in text else "line")
    context = exc.context or ""
    block_line = exc.context_mark.line + 1 if exc.context_mark else None
    block = "list" if ("collection" in context or "sequence" in context) else "mapping"
    spaces = _indent(text)
    levels = _levels(lines, line)
    if spaces in dict(levels):
        if item and block == "mapping":
            return Explained(line + 1, col, (
                f"a list item cannot stand among the keys of the mapping that starts on line {block_line}: "
                "to make a list the value of a key, end the key with ':' and indent the items under it"))
        if not item and block == "list":
            return Explained(line + 1, col, (
                f"a key cannot stand among the items of the list that starts on line {block_line}: start "
                "a new item with '- ', or indent the key under an item's first key"))
        return Explained(line + 1, col, (
            f"this {what} does not belong to the {block} that starts on line {block_line}; check the "
            "indentation of the lines above it"))
    options = ", ".join(f"{n} (line {at})" for n, at in levels) or "0"
    return Explained(line + 1, col, (
        f"bad indentation: this {what} is indented by {spaces} spaces, which lines up with no line "
        f"above it; indent it like the {what}s it belongs with (spaces in use above: {options})"))


def _mapping_value(lines: list[str], line: int, col: int) -> Explained:
    """``mapping values are not allowed here``: a ':' where YAML is in the middle of a value."""
    text = lines[line] if line < len(lines) else ""
    before = text[:col]
    if re.search(r":(\s|$)", before):
        return Explained(line + 1, col + 1, (
            "a second ': ' on one line: YAML cannot start a key inside a value. Quote the value "
            "(key: 'a: b'), or put the inner key on its own line, indented under the outer key"))
    previous = _previous(lines, line)
    if previous is not None:
        above = lines[previous]
        key_at = _key_column(above)
        if _indent(text) > key_at:
            missing = _missing_colon(lines, previous) if ":" not in above else None
            if missing is not None:
                return missing
            return Explained(line + 1, _indent(text) + 1, (
                f"this line is indented more than the key on line {previous + 1}, so YAML reads it as the "
                f"rest of that key's value, where a key cannot start; indent it by {key_at} spaces to line it "
                f"up with that key, or, to nest it under line {previous + 1}, end that line with ':' and no "
                "value"))
        missing = _missing_colon(lines, previous)
        if missing is not None:
            return missing
    return Explained(line + 1, col + 1, (
        "a ':' here would start a key inside a value; quote the value if the ':' belongs to it"))


def _flow(lines: list[str], exc: yaml.MarkedYAMLError, closer: str, got: str) -> Explained:
    """``expected ',' or ']'``: an unclosed ``[``/``{``, or entries without a comma between them."""
    opener = "[" if closer == "]" else "{"
    kind = "list" if closer == "]" else "mapping"
    example = "[a, b]" if closer == "]" else "{a: 1, b: 2}"
    start, here = exc.context_mark, exc.problem_mark
    if start is None or here is None:
        return Explained(1, 1, f"expected ',' or '{closer}'")
    if got == "<stream end>":
        return Explained(start.line + 1, start.column + 1, (
            f"this '{opener}' is never closed: add '{closer}' after the last entry of the {kind}"))
    if here.line != start.line:
        return Explained(start.line + 1, start.column + 1, (
            f"this '{opener}' is not closed before line {here.line + 1}: add '{closer}' after the last "
            f"entry of the {kind} (and a ',' between entries if it spans lines)"))
    return Explained(here.line + 1, here.column + 1, (
        f"expected ',' or '{closer}' here: separate the entries of a {kind} with ', ', e.g. {example}"))


def explain(exc: yaml.MarkedYAMLError, lines: list[str]) -> Explained:
    """The user's view of a PyYAML error: where to look and what to do (see the module docstring)."""
    problem = exc.problem or ""
    context = exc.context or ""
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line, mark.column) if mark else (0, 0)
    text = lines[line] if line < len(lines) else ""
    leading = text[:len(text) - len(text.lstrip(" \t-"))]
    if "'\\t'" in problem or "\t" in leading:
        return _tab(lines, line, col)
    found = re.search(r"but found '(.+)'$", problem)
    if problem.startswith("expected <block end>") and found:
        return _block_end(lines, line, found.group(1), exc)
    if problem == "mapping values are not allowed here":
        return _mapping_value(lines, line, col)
    if problem == "could not find expected ':'" and exc.context_mark is not None:
        missing = _missing_colon(lines, exc.context_mark.line)
        if missing is not None:
            return missing
    flow = re.match(r"expected ',' or '([\]}])', but got '(.+)'$", problem)
    if flow:
        return _flow(lines, exc, flow.group(1), flow.group(2))
    start = exc.context_mark
    if "quoted scalar" in context and "end of stream" in problem and start is not None:
        quote = lines[start.line][start.column:start.column + 1] if start.line < len(lines) else "'"
        return Explained(start.line + 1, start.column + 1,
                         f"this quote is never closed: add the closing {quote} at the end of the value")
    alias = re.match(r"found undefined alias '(.*)'$", problem)
    if alias:
        name = alias.group(1)
        return Explained(line + 1, col + 1, (
            f"'*{name}' refers to no anchor: mark the value to reuse with '&{name}' earlier in the file, "
            "or quote the value if the '*' is part of it"))
    bad_start = re.match(r"found character '(.)' that cannot start any token$", problem)
    if bad_start:
        char = bad_start.group(1)
        return Explained(line + 1, col + 1, (
            f"a value cannot start with '{char}': quote it, e.g. '{char}...'"))
    escape = re.match(r"found unknown escape character '(.*)'$", problem)
    if escape:
        return Explained(line + 1, col + 1, (
            f"'\\{escape.group(1)}' is not an escape in a double-quoted string: use single quotes when a "
            "backslash is meant literally, or write '\\\\'"))
    if "expected alphabetic or numeric character" in problem and ("anchor" in context or "alias" in context):
        return Explained(line + 1, col + 1, (
            "'&' and '*' need a name after them (&defaults, *defaults); quote the value if the '&' or '*' "
            "is part of it"))
    anchor = re.match(r"found duplicate anchor '(.*)'; first occurrence$", context)
    if anchor and exc.context_mark is not None:
        return Explained(line + 1, col + 1, (
            f"the anchor '&{anchor.group(1)}' is also defined on line {exc.context_mark.line + 1}; give "
            "each anchor its own name"))
    tag = re.match(r"could not determine a constructor for the tag '(.*)'$", problem)
    if tag:
        written = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        return Explained(line + 1, col + 1, (
            f"tags such as '{written}' are not read here: remove it (quote the value if the '!' is "
            "part of it)"))
    if "expected a single document" in context:
        return Explained(line + 1, col + 1, (
            "a second document ('---'): a suite or environment file holds one; move it to a file of its own"))
    if problem == "found unhashable key":
        return Explained(line + 1, col + 1, "a key must be a plain name, not a list or a mapping")
    return Explained(line + 1, col + 1, _plain(problem, exc))


def _plain(problem: str, exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's own message with its token names in words, for the errors not explained above."""
    for token, words in _TOKEN_WORDS.items():
        problem = problem.replace(f"'{token}'", words).replace(token, words)
    if exc.context and exc.context_mark is not None and exc.context_mark is not exc.problem_mark:
        problem += f" ({exc.context} at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
    return problem
