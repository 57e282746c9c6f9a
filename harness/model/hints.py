"""pydantic's validation errors in the user's words: what is wrong with a value and what to write instead.

pydantic reports "Input should be a valid dictionary or instance of Target"; the user wrote
``target: reviews`` and needs to read ``write target: {service: reviews}``. The translation needs the
models (which field, which union member, which bounds) and the user's data (what they wrote), and
it is the same for suites and environments, so it lives apart from the loader, which only reads
files and places these messages at the positions it recorded.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from harness._errors import Problem
from harness.model.common import NAME_PATTERN, Problems

if TYPE_CHECKING:
    from harness.model.loader import Positions

__all__ = ["PathKey", "dotted", "validation_problems"]

PathKey = tuple[str | int, ...]


def dotted(path: Iterable[str | int]) -> str:
    """A data path as users read it: ``spec.experiments[0].faults[1].percent``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


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
    if kind == "union_tag_not_found":
        tags = [t for m in _models_at(model, tuple(err["loc"])) if (t := _tag_of(m))]
        return f"this entry has no kind: add kind: with one of {', '.join(tags)}"
    if kind == "missing":
        name = err["loc"][-1]
        return f"missing required field '{name}': add {name}: ..."
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        close = difflib.get_close_matches(str(err.get("input")), expected, n=1)
        if len(expected) == 1:
            return f"{_what(err.get('input'))} is not allowed here: write {expected[0]}"
        hint = f" — did you mean '{close[0]}'?" if close else ""
        return f"{_what(err.get('input'))} is not allowed here: write one of {', '.join(expected)}{hint}"
    shape = _shape_hint(err, model, path) or _type_hint(err, path, _field_at(model, tuple(err["loc"])))
    if shape:
        return shape
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return msg


def _type_hint(err: dict[str, Any], path: PathKey, info: FieldInfo | None) -> str | None:
    """pydantic's scalar complaints ("Input should be a valid integer") with what to write instead."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    field, _ = _field_name(path)
    if kind in ("int_parsing", "int_type", "int_from_float"):
        example = _number_example(info, value, whole=True)
        return f"{field} is a whole number (an integer), not {_what(value)}: write e.g. {field}: {example}"
    if kind in ("float_parsing", "float_type"):
        return f"{field} is a number, not {_what(value)}: write e.g. {field}: {_number_example(info, value)}"
    if kind in ("bool_parsing", "bool_type"):
        return f"{field} is true or false, not {_what(value)}"
    if kind == "string_type":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return f"{field} is text: quote the number, {field}: '{value}'"
        return f"{field} is text, not {_what(value)}: write e.g. {field}: some-text"
    bounds = {"less_than_equal": ("at most", "le"), "less_than": ("less than", "lt"),
              "greater_than_equal": ("at least", "ge"), "greater_than": ("more than", "gt")}
    if kind in bounds:
        words, key = bounds[kind]
        limit = ctx.get(key)
        shown = f"{limit:g}" if isinstance(limit, float) else str(limit)
        example = shown if key in ("le", "ge") else _number_example(info, value, whole=isinstance(limit, int))
        return f"{field} must be {words} {shown}, not {value}: write e.g. {field}: {example}"
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") == NAME_PATTERN:
            suggestion = re.sub(r"[^a-z0-9]+", "-", str(value).lower()).strip("-")[:63] or "my-name"
            return (f"'{value}' is not a valid name: use lower-case letters, digits and '-' (not at either "
                    f"end), e.g. '{suggestion}'")
        return f"'{value}' does not have the form this field needs (the pattern {ctx.get('pattern')})"
    if kind == "string_too_long":
        return f"'{str(value)[:20]}...' is longer than {ctx.get('max_length')} characters: shorten it"
    if kind == "too_short":
        return f"{field} needs at least {ctx.get('min_length')} entry: add one"
    return None


def _number_example(info: FieldInfo | None, value: Any, whole: bool = False) -> str:
    """A number to suggest for a field: its default, else the value rounded, else one inside its bounds."""
    default = info.default if info is not None else None
    if isinstance(default, int | float) and not isinstance(default, bool):
        return f"{default:g}"
    low = high = None
    for rule in info.metadata if info is not None else ():
        low = getattr(rule, "ge", None) if getattr(rule, "ge", None) is not None else getattr(rule, "gt", low)
        high = getattr(rule, "le", None) if getattr(rule, "le", None) is not None else getattr(rule, "lt", high)
    try:
        guess = float(value)
    except (TypeError, ValueError):
        guess = 10.0 if whole else 1.0
    # Strict comparisons: inside both inclusive and exclusive bounds (confidence: 0.5 < c < 1).
    if low is not None and high is not None and not low < guess < high:
        guess = (float(low) + float(high)) / 2
    elif low is not None and guess <= low:
        guess = float(low) + 1
    return str(round(guess)) if whole else f"{guess:g}"


def _field_at(model: type[BaseModel], loc: PathKey) -> FieldInfo | None:
    """The pydantic field that ``loc`` ends at, for its default and bounds (``None`` past a union)."""
    parents = _models_at(model, loc[:-1])
    if len(parents) != 1 or not isinstance(loc[-1], str):
        return None
    fields = {f.alias or name: f for name, f in parents[0].model_fields.items()}
    return fields.get(loc[-1])


_EDGE_TEXT = re.compile(r"^\s*([^\s>-][^>]*?)\s*-+>\s*(\S.*?)\s*$")


def _field_name(path: PathKey) -> tuple[str, bool]:
    """The key the user wrote for the value at ``path``, and whether the value is a list entry."""
    names = [p for p in path if isinstance(p, str)]
    return (names[-1] if names else "value"), bool(path) and isinstance(path[-1], int)


def _shape_hint(err: dict[str, Any], model: type[BaseModel], path: PathKey) -> str | None:
    """What to write when a value has the wrong shape: a name where a mapping belongs, and so on.

    These are the mistakes users make most (``target: reviews``, ``edge: a->b``, a fault written as a
    string); pydantic only says "should be a valid dictionary", which does not say which dictionary.
    """
    kind, value = err["type"], err.get("input")
    field, entry = _field_name(path)
    if kind == "list_type" and not isinstance(value, list):
        if isinstance(value, dict):
            return f"{field} is a list: put '- ' before the entry (or write {field}: [{{...}}])"
        return f"{field} is a list: write {field}: [{_flow(value)}]"
    if kind not in ("model_type", "model_attributes_type", "dict_type") or isinstance(value, dict):
        return None
    candidates = _models_at(model, tuple(err["loc"]))
    names = {m.__name__ for m in candidates}
    if names == {"Target"}:
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, str):
            versioned = re.fullmatch(r"(.+)-(v\d+)", value)
            more = (f" (or {{service: {versioned.group(1)}, version: {versioned.group(2)}}} for one version)"
                    if versioned else "")
            return f"{field} is a mapping: write {field}: {{service: {value}}}{more}"
        return f"{field} is a mapping: write {field}: {{service: NAME}}, optionally with version: V"
    if names & {"Edge", "Route"} and len(names) == 1:
        if isinstance(value, str) and (match := _EDGE_TEXT.match(value)):
            return f"{field} is a mapping: write {field}: {{from: {match.group(1)}, to: {match.group(2)}}}"
        if isinstance(value, list) and len(value) == 2:
            return f"{field} is a mapping: write {field}: {{from: {_flow(value[0])}, to: {_flow(value[1])}}}"
        return f"{field} is a mapping: write {field}: {{from: CALLER, to: CALLEE}}"
    tags = [t for m in candidates if (t := _tag_of(m))]
    if tags and len(tags) == len(candidates):
        noun = "fault" if field == "faults" else ("expectation" if field == "expect" else "entry")
        chosen = value if isinstance(value, str) and value in tags else None
        if chosen is None and isinstance(value, str):
            close = difflib.get_close_matches(value, tags, n=1)
            chosen = close[0] if close else None
        example = _example(next((m for m in candidates if _tag_of(m) == (chosen or tags[0])), candidates[0]))
        return f"each {noun} is a mapping with a kind, not {_what(value)}: write - {example}"
    if kind == "dict_type":
        names_given = value if isinstance(value, list) and all(isinstance(v, str) for v in value) else []
        filler = "{}" if candidates else "..."
        pairs = ", ".join(f"{v}: {filler}" for v in names_given) or f"NAME: {filler}"
        return f"{field} is a mapping, not {_what(value)}: write {field}: {{{pairs}}}"
    if len(candidates) == 1:
        example = _example(candidates[0])
        required = [f.alias or n for n, f in candidates[0].model_fields.items() if f.is_required()]
        if isinstance(value, str) and len(required) == 1:
            example = f"{{{required[0]}: {value}}}"
        if entry:
            return f"each entry of {field} is a mapping, not {_what(value)}: write - {example}"
        return f"{field} is a mapping, not {_what(value)}: write {field}: {example}"
    return None


def _what(value: Any) -> str:
    """A value's type in a user's words: a list, a name, a number, nothing."""
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    return "a number" if isinstance(value, int | float) else f"'{str(value)[:40]}'"


def _example(model: Any) -> str:
    """A flow-style skeleton of ``model``: its kind and required fields, e.g. ``{kind: kill, target: ...}``;
    for a model without required fields, its first few fields."""
    parts = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key == "kind":
            parts.append(f"kind: {_tag_of(model)}")
        elif info.is_required():
            parts.append(f"{key}: ...")
    if not parts:
        parts = [f"{info.alias or name}: ..." for name, info in list(model.model_fields.items())[:4]]
    return "{" + ", ".join(parts) + "}"


def _flow(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_flow(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _models_at(model: type[BaseModel], loc: PathKey) -> list[Any]:
    """Best effort: the model(s) pydantic expected at ``loc`` (several for a union).

    ``loc`` still holds union tags ('http-delay'), which pick the member of a discriminated union.
    """
    candidates: list[Any] = [model]
    for part in loc:
        if isinstance(part, int) or str(part).startswith("function-"):
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
    return candidates


def _allowed_fields(model: type[BaseModel], loc: PathKey, data: Any) -> list[str]:
    """Best effort: the field names of the model at pydantic's ``loc`` (for 'did you mean')."""
    del data
    candidates = _models_at(model, loc[:-1])
    return [f.alias or name for name, f in candidates[0].model_fields.items()] if candidates else []


def _tag_of(model: Any) -> Any:
    kind = model.model_fields.get("kind")
    args: tuple[Any, ...] = getattr(kind.annotation, "__args__", ()) if kind else ()
    return args[0] if len(args) == 1 else None


def _models_in(annotation: Any) -> list[Any]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


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


def _expanded(errors: list[Any]) -> Iterator[tuple[dict[str, Any], PathKey, str | None]]:
    """Each pydantic error with the path of the value it is about, and its message when the model gave
    one; a :class:`Problems` (several located findings of one check) becomes one entry per finding."""
    for err in _relevant(errors):
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, Problems):
            for located in cause.problems:
                yield dict(err), (*err["loc"], *located.path), str(located)
        else:
            yield dict(err), (*err["loc"], *getattr(cause, "path", ())), None


def _explained_by_typos(errors: list[tuple[dict[str, Any], PathKey, str | None]],
                        model: type[BaseModel]) -> set[PathKey]:
    """Locations of missing fields that a misspelt key beside them explains (``precent`` for ``percent``):
    "did you mean 'percent'" says it all, and "missing required field 'percent'" would only mislead."""
    explained: set[PathKey] = set()
    for err, loc, _ in errors:
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _allowed_fields(model, loc, None), n=1)
            if close:
                explained.add((*loc[:-1], close[0]))
    return explained


def validation_problems(exc: ValidationError, model: type[BaseModel], data: Any,
                        pos: Positions) -> Iterator[Problem]:
    """One located problem per distinct pydantic error, in the user's words (see the module docstring)."""
    seen: set[tuple[int, int, str]] = set()
    errors = list(_expanded(exc.errors()))
    typos = _explained_by_typos(errors, model)
    for err, loc, given in errors:
        if err["type"] == "missing" and loc in typos:
            continue
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
        message = given or _hint(err, model, data, path)
        if (line, col, message) in seen:
            continue
        seen.add((line, col, message))
        yield Problem(pos.file, line, col, shown, message)
