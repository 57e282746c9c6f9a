"""Loading YAML documents into models, with every problem located at FILE:LINE:COL.

PyYAML's node tree keeps the position of every value; we keep a map from the data path
(``spec.experiments[0].faults[1].percent``) to that position and use it to place pydantic's errors,
so a user is told exactly which line to change and how.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from harness._errors import InputError, Problem
from harness.model.environment import Environment
from harness.model.suite import Suite

__all__ = ["Loaded", "Positions", "load_environment", "load_suite", "parse_document"]

M = TypeVar("M", bound=BaseModel)
PathKey = tuple[str | int, ...]


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
        line, col = self.marks.get(path, (1, 1))
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


def dotted(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


MAX_VALUES = 100_000
"""No suite or environment comes near this; a document whose aliases expand beyond it is an attack
("billion laughs") or a mistake, and would make validation take exponential time."""


class _TooLarge(Exception):
    pass


def _walk(node: yaml.Node, path: PathKey, marks: dict[PathKey, tuple[int, int]],
          above: frozenset[int] = frozenset()) -> None:
    if id(node) in above:  # an alias of an enclosing node: a recursive document
        return
    if len(marks) > MAX_VALUES:
        raise _TooLarge
    above = above | {id(node)}
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                name = int(key.value) if key.tag == "tag:yaml.org,2002:int" else key.value
                child = (*path, name)
                _walk(value, child, marks, above)
                # Point errors about a key (unknown field) at the key itself.
                marks[(*child, "__key__")] = (key.start_mark.line + 1, key.start_mark.column + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), marks, above)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans that refuses duplicate keys.

    YAML 1.1 reads ``on``, ``off``, ``yes`` and ``no`` as booleans, which would turn the retry
    policy's ``on: [5xx]`` into ``True: [5xx]``; only ``true``/``false`` are booleans here.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
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
                    None, None, f"duplicate key '{key}'", key_node.start_mark
                )
            seen.add(key)
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


def parse_document(text: str, file: str) -> tuple[Any, Positions]:
    """Parse one YAML document, keeping positions; syntax errors become located problems."""
    try:
        loader = _UniqueKeyLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise InputError.at(file, f"YAML error: {exc.reason} (character {exc.character!r})", line) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise InputError.at(file, "the file is empty: expected a document with apiVersion and kind")
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or str(exc)
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            # "expected ',' or '}'" at the end of the file is only useful with where the '{' was opened.
            what += f" ({exc.context} at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
        raise InputError.at(file, f"YAML syntax error: {what}", line, col) from None
    except yaml.YAMLError as exc:
        raise InputError.at(file, f"YAML error: {exc}") from None
    except ValueError as exc:  # e.g. an integer literal longer than int() accepts
        raise InputError.at(file, f"cannot read a value: {exc}") from None
    finally:
        loader.dispose()
    positions = Positions(file)
    try:
        _walk(node, (), positions.marks)
    except _TooLarge:
        raise InputError.at(file, f"the document expands to more than {MAX_VALUES} values (through aliases?); "
                            "write it out plainly") from None
    return data, positions


def _hint(err: dict[str, Any], model: type[BaseModel], data: Any, path: PathKey) -> str:
    msg = str(err["msg"])
    kind = err["type"]
    if kind == "extra_forbidden":
        name = str(err["loc"][-1])
        siblings = _allowed_fields(model, tuple(err["loc"]), data)
        close = difflib.get_close_matches(name, siblings, n=1)
        hint = f" — did you mean '{close[0]}'?" if close else (
            f" — allowed here: {', '.join(sorted(siblings))}" if siblings else ""
        )
        return f"unknown field '{name}'{hint}"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        tag = ctx.get("tag", "?")
        expected = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        close = difflib.get_close_matches(str(tag), expected, n=1)
        hint = f" — did you mean '{close[0]}'?" if close else f" — use one of: {', '.join(expected)}"
        return f"unknown kind '{tag}'{hint}"
    if kind == "missing":
        return f"missing required field '{err['loc'][-1]}'"
    if kind == "literal_error":
        return f"{msg} (got {err.get('input')!r})"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return msg


def _allowed_fields(model: type[BaseModel], loc: PathKey, data: Any) -> list[str]:
    """Best effort: the field names of the model at pydantic's ``loc`` (for 'did you mean').

    ``loc`` still holds union tags ('http-delay'), which pick the member of a discriminated union.
    """
    del data
    candidates: list[Any] = [model]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        tagged = [m for m in candidates if _tag_of(m) == part]
        if tagged:
            candidates = tagged
            continue
        nxt: list[Any] = []
        for m in candidates:
            fields = {f.alias or name: f for name, f in m.model_fields.items()}
            if part in fields:
                nxt += _models_in(fields[part].annotation)
        if not nxt:
            return []
        candidates = nxt
    return [f.alias or name for name, f in candidates[0].model_fields.items()]


def _tag_of(model: Any) -> Any:
    kind = model.model_fields.get("kind")
    args: tuple[Any, ...] = getattr(kind.annotation, "__args__", ()) if kind else ()
    return args[0] if len(args) == 1 else None


def _models_in(annotation: Any) -> list[Any]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


_BRANCH_NOISE = frozenset({"model_type", "dict_type", "model_attributes_type", "duration_type"})


def _relevant(errors: list[Any]) -> list[Any]:
    """Drop union-branch noise: where one branch explains the value (a duration without a unit, a phase
    mapping without ``max``), the other branch's "should be a dictionary/duration" is not actionable."""
    def loc(err: Any) -> tuple[Any, ...]:
        return tuple(p for p in err["loc"] if not str(p).startswith("function-"))

    explained = [loc(e) for e in errors if e["type"] not in _BRANCH_NOISE]
    out = []
    for err in errors:
        here = loc(err)
        noisy = err["type"] in _BRANCH_NOISE
        if noisy and any(x[:len(here)] == here or here[:len(x)] == x for x in explained):
            continue
        out.append(err)
    return out


def _problems(exc: ValidationError, model: type[BaseModel], data: Any, pos: Positions) -> Iterator[Problem]:
    seen: set[tuple[int, int, str]] = set()
    for err in _relevant(exc.errors()):
        loc = (*err["loc"], *getattr((err.get("ctx") or {}).get("error"), "path", ()))
        path, _ = pos.locate(data, loc)
        line, col = pos.marks.get(path, (1, 1))
        if err["type"] == "extra_forbidden":
            key_pos = pos.marks.get((*path, "__key__"))
            if key_pos:
                line, col = key_pos
            path = (*path, "__key__")[:-1]
            shown = dotted((*path, str(loc[-1]))) if path[-1:] != (loc[-1],) else dotted(path)
        else:
            shown = dotted(path) if path else dotted(p for p in loc if isinstance(p, int | str))
        message = _hint(dict(err), model, data, path)
        if (line, col, message) in seen:
            continue
        seen.add((line, col, message))
        yield Problem(pos.file, line, col, shown, message)


def _load(path: Path, model: type[M], kind: str) -> Loaded[M]:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError.at(file, f"no such file; check the path of the {kind.lower()}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError.at(file, f"cannot read the file: {exc}") from None
    data, pos = parse_document(text, file)
    if not isinstance(data, dict):
        raise InputError.at(file, f"expected a mapping with apiVersion, kind: {kind}, metadata and spec")
    actual = data.get("kind")
    if actual != kind:
        line, col = pos.at("kind")
        hint = " (an environment is given with --env or spec.environment)" if actual == "Environment" else ""
        what = f"kind: {actual}" if actual else "no kind"
        raise InputError.at(file, f"this document has {what}, expected kind: {kind}{hint}", line, col, "kind")
    try:
        return Loaded(model.model_validate(data), path, pos, data)
    except ValidationError as exc:
        raise InputError(sorted(_problems(exc, model, data, pos), key=lambda p: (p.line, p.col))) from None


def load_suite(path: str | Path) -> Loaded[Suite]:
    """Load and validate a Suite file (schema level; see ``harness.model.check`` for the rest)."""
    return _load(Path(path), Suite, "Suite")


def load_environment(path: str | Path) -> Loaded[Environment]:
    """Load and validate an Environment file."""
    return _load(Path(path), Environment, "Environment")
