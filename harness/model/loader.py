"""Loading YAML documents into models, with every problem located at FILE:LINE:COL.

PyYAML's node tree keeps the position of every value; we keep a map from the data path
(``spec.experiments[0].faults[1].percent``) to that position and use it to place pydantic's errors,
so a user is told exactly which line to change and how. Every way a file can fail to be read (missing,
a directory, binary, not UTF-8, too large, too deeply nested, a YAML syntax error) ends as an
:class:`InputError` with a location too: the CLI turns that into exit 2, never into a traceback.

What the messages say is delegated: :mod:`harness.model.syntax` explains YAML syntax errors and
:mod:`harness.model.hints` puts pydantic's validation errors into the user's words.
"""

from __future__ import annotations

import codecs
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from harness._errors import InputError, Problem
from harness.model.environment import Environment
from harness.model.gameday import GameDay
from harness.model.hints import PathKey, dotted, validation_problems
from harness.model.suite import Suite
from harness.model.syntax import excerpt, explain, source_lines

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_VALUES", "Loaded", "Positions", "decode_document", "load_environment",
           "load_gameday", "load_suite", "parse_document", "read_document"]

M = TypeVar("M", bound=BaseModel)


@dataclass
class Positions:
    """Where each value of a document sits in its file (1-based line and column)."""

    file: str
    marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def locate(self, data: Any, loc: Iterable[str | int]) -> tuple[PathKey, tuple[int, int]]:
        """Follow ``loc`` through ``data`` as far as it exists; return that path and its position.

        pydantic inserts union tags (``'http-abort'``) into locations; they are skipped because they
        are not in the data.
        """
        here: PathKey = ()
        node = data
        for part in loc:
            if not _has(node, part):
                continue
            node = node[part]
            here = (*here, part)
        return here, self.marks.get(here, (1, 1))

    def at(self, *path: str | int) -> tuple[int, int]:
        return self.marks.get(tuple(path), (1, 1))

    def problem(self, path: PathKey, message: str) -> Problem:
        """A problem at ``path``; a field the document leaves out (a default) is placed at the nearest
        enclosing value that is written, so FILE:LINE points at the fault, not at the top of the file."""
        key = tuple(path)
        while key and key not in self.marks:
            key = key[:-1]
        line, col = self.marks.get(key, (1, 1))
        return Problem(self.file, line, col, dotted(path), message)


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


@dataclass
class Loaded(Generic[M]):
    """A validated document together with where it came from."""

    model: M
    path: Path
    positions: Positions
    data: Any


MAX_VALUES = 100_000
"""No suite or environment comes near this; a document whose aliases expand beyond it is an attack
("billion laughs") or a mistake, and would make validation take exponential time."""

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists accepted. The deepest real document is about 8 levels
(``spec.experiments[0].faults[0].steps[0].split``); thousands of levels (``[[[[...]]]]``) would exhaust
Python's recursion limit in the YAML composer, so nesting is counted while the file is scanned (which
PyYAML does without recursion) and refused where it crosses this limit."""

MAX_FILE_BYTES = 1 << 20
"""1 MiB. A suite with a hundred experiments is under 50 KB; a larger file is not a suite (a log, an
image, a generated dump) and would only make the pure-Python YAML reader slow."""

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
"""Byte-order marks YAML allows, longest first (a UTF-32 LE mark starts like a UTF-16 LE one)."""

_MAGIC = ((b"\x89PNG", "a PNG image"), (b"GIF8", "a GIF image"), (b"\xff\xd8\xff", "a JPEG image"),
          (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a zip archive"), (b"\x1f\x8b", "a gzip archive"),
          (b"\x7fELF", "an executable"))


class _TooLarge(Exception):
    pass


class _TooDeep(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__(mark)
        self.mark = mark


_INT_KEYS = yaml.constructor.SafeConstructor()


def _int_key(node: yaml.ScalarNode) -> int | str:
    """An integer key exactly as the constructor read it into the data (``0x1F``, ``0b1``, ``010``,
    YAML 1.1's ``1:20``), so that the key's position is found under the same name."""
    try:
        return int(_INT_KEYS.construct_yaml_int(node))
    except (ValueError, TypeError):
        return str(node.value)


def _walk(root: yaml.Node, marks: dict[PathKey, tuple[int, int]]) -> None:
    """Record where every value sits, following aliases, without recursion.

    Aliases can nest a document deeper than its text does (an anchored 60-level list reused inside
    another one), so depth is checked here too, at the node that crosses ``MAX_DEPTH``.
    """
    stack: list[tuple[yaml.Node, PathKey, frozenset[int], yaml.Mark | None]] = [(root, (), frozenset(), None)]
    while stack:
        node, path, above, alias_site = stack.pop()
        if id(node) in above:  # an alias of an enclosing node: a recursive document
            continue
        if len(marks) > MAX_VALUES:
            raise _TooLarge
        if len(above) >= MAX_DEPTH and isinstance(node, yaml.CollectionNode):
            # The same count as the scanner's: this would be collection number MAX_DEPTH + 1 on the path.
            raise _TooDeep(alias_site or node.start_mark)
        inner = above | {id(node)}
        marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        children: list[tuple[yaml.Node, PathKey]] = []
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    name = _int_key(key) if key.tag == "tag:yaml.org,2002:int" else key.value
                    # Point errors about a key (unknown field) at the key itself.
                    marks[(*path, name, "__key__")] = (key.start_mark.line + 1, key.start_mark.column + 1)
                    children.append((value, (*path, name)))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, (*path, i)) for i, item in enumerate(node.value)]
        for child, child_path in reversed(children):
            # A child written outside its parent's text was reached through an alias: a depth problem
            # below it is reported where the first alias on the way is used (within that alias's parent),
            # which is the line that made the document deep, not where the reused value was defined.
            inside = node.start_mark.index <= child.start_mark.index <= node.end_mark.index
            stack.append((child, child_path, inner, alias_site or (None if inside else node.start_mark)))


_OPENING = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
            yaml.FlowSequenceStartToken)
_CLOSING = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans that refuses duplicate keys and nesting beyond ``MAX_DEPTH``.

    YAML 1.1 reads ``on``, ``off``, ``yes`` and ``no`` as booleans, which would turn the retry
    policy's ``on: [5xx]`` into ``True: [5xx]``; only ``true``/``false`` are booleans here.
    """

    depth = 0

    def get_token(self) -> Any:
        """Count collections as the parser takes their tokens; refuse before the composer recurses."""
        token = super().get_token()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
        if isinstance(token, _OPENING):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise _TooDeep(token.start_mark)
        elif isinstance(token, _CLOSING):
            self.depth = max(0, self.depth - 1)
        return token

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<: *anchor' is flattened by SafeConstructor.construct_mapping
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, "found unhashable key", key_node.start_mark
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (first on line {seen[key]}): give each key once; "
                    "remove one of them", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.yaml_implicit_resolvers = {
    # No implicit booleans (re-added below as YAML 1.2's) and no implicit dates: `description: 2024-01-01`
    # is text, not a datetime.date the models would refuse.
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


STDIN_NAMES = frozenset({"-", "/dev/stdin"})
"""Arguments that mean "the document on standard input" (``validate -``, ``--env /dev/stdin``)."""
_STDIN_READ: list[tuple[object, bytes]] = []
"""What standard input held, with the ``sys.stdin`` object it was read from (a test harness swaps it per
command). The object itself is kept, not its ``id``: a freed stream's id can be reused by the next one,
which then would be taken for the stream already read (seen: a CLI test reading the previous command's
input)."""


def _stdin_bytes() -> bytes:
    """Standard input, read once however often it is named: a pipe cannot be read twice, and a suite
    given as ``-`` is read both to check it and to run it."""
    if not _STDIN_READ or _STDIN_READ[0][0] is not sys.stdin:
        _STDIN_READ[:] = [(sys.stdin, sys.stdin.buffer.read(MAX_FILE_BYTES + 1))]
    return _STDIN_READ[0][1]


def display_name(path: Path) -> str:
    """How a document is named in messages: its path, or ``<stdin>``."""
    return "<stdin>" if str(path) in STDIN_NAMES else str(path)


def read_document(path: Path, kind: str) -> str:
    """The text of a suite or environment file, or an InputError saying why it is not a YAML text file.

    UTF-8 (with or without a byte-order mark) and UTF-16/32 with a mark are read, as YAML allows; CRLF
    line ends are fine. A binary file, a directory or text in another encoding is refused with what
    to do about it, never with a decoding traceback.
    """
    file = display_name(path)
    what = kind.lower()
    if file == "<stdin>":
        data = _stdin_bytes()
        if len(data) > MAX_FILE_BYTES:
            raise InputError.at(file, f"standard input holds more than {MAX_FILE_BYTES // 1024} KiB; a {what} is a "
                                      "small YAML text file: is this the right input?")
        return decode_document(data, file)
    try:
        if path.is_dir():
            raise InputError.at(file, f"this is a directory, not a YAML file: name the {what} file(s) in it, "
                                      f"e.g. {path / '*.yaml'}")
        if path.exists() and not path.is_file():
            raise InputError.at(file, f"this is not a regular file: name the {what}'s YAML file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError.at(file, f"the file is {size // 1024} KiB; a {what} is a small YAML text "
                                      f"file (at most {MAX_FILE_BYTES // 1024} KiB): is this the right file?")
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError.at(file, f"no such file; check the path of the {what}") from None
    except PermissionError:
        raise InputError.at(file, "cannot read the file: permission denied") from None
    except OSError as exc:
        raise InputError.at(file, f"cannot read the file: {exc.strerror or exc}") from None
    return decode_document(data, file)


def decode_document(data: bytes, file: str) -> str:
    """Bytes to text as YAML reads them (see :func:`read_document`); located problems otherwise."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding).lstrip("\ufeff")
            except UnicodeDecodeError as exc:
                raise InputError.at(file, f"the file starts with a {encoding.upper()} byte-order mark but is "
                                          f"not {encoding.upper()} text ({exc.reason}); save it as UTF-8") from None
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise InputError.at(file, f"not a YAML text file: this is {what}; give the path of the YAML file "
                                      "instead")
    if b"\x00" in data:
        line, col = _position(data, data.index(b"\x00"))
        raise InputError.at(file, "not a YAML text file: it contains NUL bytes (a binary file, or UTF-16 "
                                  "without a byte-order mark?); save it as UTF-8 text", line, col)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _position(data, exc.start)
        byte = data[exc.start]
        legacy = _legacy_text(data)
        if legacy is not None:
            char = legacy[exc.start] if len(legacy) == len(data) else "?"
            hint = (f"byte 0x{byte:02X} is '{char}' in Latin-1/Windows-1252, the encoding the file seems to "
                    "be in; save it as UTF-8")
        else:
            hint = f"byte 0x{byte:02X} is not UTF-8: this is not a YAML text file; give the path of one instead"
        raise InputError.at(file, f"the file is not UTF-8 text: {hint}", line, col) from None


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of a byte offset (columns in bytes: the text cannot be decoded)."""
    line = data.count(b"\n", 0, offset) + 1
    return line, offset - (data.rfind(b"\n", 0, offset) + 1) + 1


def _legacy_text(data: bytes) -> str | None:
    """``data`` as Windows-1252 text when it reads as such (printable, no control bytes), else None:
    that tells a file saved by an old editor from binary data, which deserve different advice."""
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    if all(c.isprintable() or c in "\t\r\n" for c in text):
        return text
    return None


def parse_document(text: str, file: str) -> tuple[Any, Positions]:
    """Parse one YAML document, keeping positions; every failure becomes a located InputError.

    Syntax errors are explained in plain words by :mod:`harness.model.syntax`, with the offending line
    and a caret. Nesting deeper than ``MAX_DEPTH`` and documents expanding past ``MAX_VALUES`` are
    refused where they happen; a RecursionError or MemoryError that still escapes (e.g. from a chain of
    thousands of merge keys) is reported as a refusal of the document, not as a crash.
    """
    lines = source_lines(text)
    try:
        return _parse(text, file, lines)
    except (RecursionError, MemoryError):
        raise InputError.at(file, f"the document is too deeply nested or too large to read (more than "
                                  f"{MAX_DEPTH} levels, or a very long chain of aliases or merge keys); "
                                  "write it out plainly") from None


def _parse(text: str, file: str, lines: list[str]) -> tuple[Any, Positions]:
    try:
        loader = _UniqueKeyLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _reader_problem(exc, text, file, lines) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise InputError.at(file, "the file is empty: write a document with apiVersion: harness/v1, kind, "
                                      "metadata and spec")
        data = loader.construct_document(node)
    except _TooDeep as deep:
        raise _too_deep(deep.mark, file, lines) from None
    except yaml.MarkedYAMLError as exc:
        where = explain(exc, lines)
        raise InputError.at(file, f"YAML syntax error: {where.message}{excerpt(lines, where.line, where.col)}",
                            where.line, where.col) from None
    except yaml.reader.ReaderError as exc:
        raise _reader_problem(exc, text, file, lines) from None
    except yaml.YAMLError as exc:
        raise InputError.at(file, f"YAML error: {exc}") from None
    except ValueError as exc:  # e.g. an integer literal longer than int() accepts
        raise InputError.at(file, f"cannot read a value: {exc}") from None
    finally:
        loader.dispose()
    positions = Positions(file)
    try:
        _walk(node, positions.marks)
    except _TooLarge:
        raise InputError.at(file, f"the document expands to more than {MAX_VALUES} values (through aliases?); "
                            "write it out plainly") from None
    except _TooDeep as deep:
        raise _too_deep(deep.mark, file, lines) from None
    return data, positions


def _too_deep(mark: yaml.Mark, file: str, lines: list[str]) -> InputError:
    line, col = mark.line + 1, mark.column + 1
    return InputError.at(file, f"mappings and lists are nested more than {MAX_DEPTH} levels deep here; a suite or "
                               "environment needs about 8: remove the extra nesting (brackets, indentation or "
                               f"aliases inside aliases){excerpt(lines, line, col)}", line, col)


def _reader_problem(exc: yaml.reader.ReaderError, text: str, file: str, lines: list[str]) -> InputError:
    """A character YAML does not allow in a file (a control character from a pasted escape sequence)."""
    before = source_lines(text[:exc.position])
    line, col = len(before), len(before[-1]) + 1
    char = exc.character if isinstance(exc.character, str) else chr(exc.character)
    return InputError.at(file, f"the file contains the control character U+{ord(char):04X}, which YAML does "
                               f"not allow; delete it{excerpt(lines, line, col)}", line, col)


def _load(path: Path, model: type[M], kind: str) -> Loaded[M]:
    file = display_name(path)
    text = read_document(path, kind)
    data, pos = parse_document(text, file)
    if not isinstance(data, dict):
        what = "a list" if isinstance(data, list) else f"the single value {str(data)[:40]!r}"
        raise InputError.at(file, f"the document is {what}; a {kind.lower()} is a mapping: write apiVersion: "
                                  f"harness/v1, kind: {kind}, metadata and spec")
    actual = data.get("kind")
    if actual != kind:
        line, col = pos.at("kind")
        what = f"kind: {actual}" if actual else "no kind"
        if actual == "Environment":
            fix = "pass an environment with --env FILE, or name it in a suite's spec.environment"
        elif actual == "Suite":
            fix = "pass a suite as SUITE, and this file as --env"
        else:
            fix = f"write kind: {kind}"
        raise InputError.at(file, f"this document has {what}, expected kind: {kind}; {fix}", line, col, "kind")
    try:
        return Loaded(model.model_validate(data), path, pos, data)
    except ValidationError as exc:
        raise InputError(sorted(validation_problems(exc, model, data, pos), key=lambda p: (p.line, p.col))) from None
    except (RecursionError, MemoryError):
        # A last resort: _walk bounds the depth of the data, so this is a bug of ours, reported as input.
        raise InputError.at(file, f"the document is too deeply nested or too large to validate (more than "
                                  f"{MAX_DEPTH} levels?); write it out plainly") from None


def load_suite(path: str | Path) -> Loaded[Suite]:
    """Load and validate a Suite file (schema level; see ``harness.runner.checks`` for the rest)."""
    return _load(Path(path), Suite, "Suite")


def load_environment(path: str | Path) -> Loaded[Environment]:
    """Load and validate an Environment file."""
    return _load(Path(path), Environment, "Environment")


def load_gameday(path: str | Path) -> Loaded[GameDay]:
    """Load and validate a GameDay file (SUITE-FORMAT §4)."""
    return _load(Path(path), GameDay, "GameDay")
