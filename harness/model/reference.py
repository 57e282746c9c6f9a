"""The suite and environment reference (Markdown) and the JSON Schema files, generated from the schema.

Why generated: the reference must say exactly what the loader accepts, and a hand-written page drifts
the first time a field is added. So the structure of every page (which documents, which sections,
which fields, their types, bounds, enums and defaults) is read from ``harness.model.schema.schemas()``,
the same JSON Schema that editors use for completion; only prose lives here. CI runs
``python -m harness.model.reference --check`` (and ``tests/unit/docs/test_reference.py``) so a change to
the models that is not followed by regenerating the docs fails the build.

Where the prose comes from: ``harness.model.descriptions`` puts the user-facing text of every model,
kind and field into the schema as ``description`` (editors show it on hover), and this module reads it
from there. Only the page introductions live here. A field the schema gains and nobody describes still
appears in the tables, with an empty description.

Defaults: pydantic leaves values built by ``default_factory`` (``versions``, ``behaviour``, ``metrics``,
``retries.on``, ...) out of the schema, so those are read from the models and shown too; a user must
not have to read Python to learn that an absent ``versions`` means ``{v1: {replicas: 1}}``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from harness.model.common import NAME_PATTERN
from harness.model.durations import DURATION_PATTERN, format_compound, format_duration
from harness.model.schema import schemas

__all__ = [
    "DOCUMENTS",
    "generated_files",
    "main",
    "render_reference",
    "schema_text",
    "stale_files",
    "write_generated",
]

JsonDict = dict[str, Any]

DOCUMENTS = ("suite", "environment", "gameday")
"""The documents of SUITE-FORMAT, in the order the reference presents them."""

_TITLES = {"suite": "Suite", "environment": "Environment", "gameday": "GameDay"}

_GROUPS = {"faults": ("fault", "Fault kinds"), "expect": ("expectation", "Expectation kinds")}
"""Discriminated unions by the property that holds them: anchor prefix of their kinds, section title."""

# --------------------------------------------------------------------------------------------- prose
_INTROS = {
    "suite": (
        "A Suite is a list of experiments: load through the gateway, faults during the `fault` phase, "
        "and expectations judged on the evidence of a phase. See [suites](../concepts/suites.md), "
        "[faults](../concepts/faults.md) and [expectations](../concepts/expectations.md) for what they do."
    ),
    "environment": (
        "An Environment describes a mesh: its services, their versions and replicas, who calls whom, and "
        "the policy the mesh declares on each edge. See [environments](../concepts/environment.md) and "
        "[the local mesh](../concepts/local-mesh.md)."
    ),
    "gameday": (
        "A GameDay names the suites a scheduled game day runs, against which environment, in which hours, "
        "where its history is kept and whom it tells. See [game days](../concepts/gamedays.md)."
    ),
}

# ------------------------------------------------------------------------------------ model defaults
def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """Every pydantic model mentioned in a type annotation (through unions, lists, Annotated...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def factory_defaults() -> dict[str, dict[str, Any]]:
    """``{model name: {field alias: default as JSON}}`` for fields whose default comes from a factory.

    The schema omits these defaults (pydantic never calls a ``default_factory`` to write a schema), yet
    they are part of the contract, so the reference reads them from the models themselves.
    """
    from harness.model.environment import Environment
    from harness.model.suite import Suite

    out: dict[str, dict[str, Any]] = {}
    stack: list[type[BaseModel]] = [Suite, Environment]
    while stack:
        model = stack.pop()
        if model.__name__ in out:
            continue
        entries: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            if info.default_factory is not None and info.annotation is not None:
                value = info.get_default(call_default_factory=True, validated_data={})
                entries[info.alias or name] = TypeAdapter(info.annotation).dump_python(
                    value, mode="json", by_alias=True, exclude_none=True)
            stack.extend(_models_in(info.annotation))
        out[model.__name__] = entries
    return out


def _supported() -> tuple[frozenset[str], frozenset[str]]:
    """Fault and expectation kinds this version can run.

    Read from the fault and expectation registries the runner checks against, rather than restated
    here, so the reference cannot claim a kind works before ``plan`` accepts it. Imported lazily: the
    model package otherwise knows nothing of the runner.
    """
    from harness.assertions import SUPPORTED_KINDS
    from harness.faults import IMPLEMENTED

    return frozenset(IMPLEMENTED), frozenset(SUPPORTED_KINDS)


# ------------------------------------------------------------------------------------------ rendering
def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


_PLAIN = re.compile(r"^[A-Za-z_./][-A-Za-z0-9_./]*$")
_UNQUOTED = re.compile(r"\d+(\.\d+)?(us|µs|ms|s|m|h)|\d+xx")
"""Durations and ``5xx``: strings YAML reads back as strings although they start with a digit."""
_YAML_WORDS = frozenset({"true", "false", "null", "yes", "no", "on", "off", "~"})


def flow_yaml(value: Any) -> str:
    """A value as a user would write it in YAML flow style: ``{v1: {replicas: 1}}``, ``[5xx]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, str):
        plain = bool(_PLAIN.match(value) or _UNQUOTED.fullmatch(value)) and value not in _YAML_WORDS
        return value if plain else json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {flow_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow_yaml(v) for v in value) + "]"
    return json.dumps(value)


def _is_duration(schema: JsonDict) -> bool:
    return schema.get("type") == "string" and schema.get("pattern") == DURATION_PATTERN


def _alternatives(schema: JsonDict) -> list[JsonDict]:
    """The non-null members of a union (a plain schema is its own only member)."""
    members: list[JsonDict] = schema.get("anyOf") or schema.get("oneOf") or [schema]
    return [s for s in members if s.get("type") != "null"]


def _bounds(schema: JsonDict) -> str:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if lo is not None and hi is not None:
        return f"{lo:g} to {hi:g}"
    parts = []
    if lo is not None:
        parts.append(f"≥ {lo:g}")
    if xlo is not None:
        parts.append(f"> {xlo:g}")
    if hi is not None:
        parts.append(f"≤ {hi:g}")
    if xhi is not None:
        parts.append(f"< {xhi:g}")
    return " and ".join(parts)


@dataclass
class _Section:
    name: str
    anchor: str
    title: str
    group: str | None = None
    kind: str | None = None


@dataclass
class _Document:
    """One schema, with the sections of its reference in reading order."""

    key: str
    schema: JsonDict
    defaults: dict[str, dict[str, Any]]
    supported: tuple[frozenset[str], frozenset[str]]
    sections: dict[str, _Section] = field(default_factory=dict)
    groups: dict[str, tuple[str, str, list[str]]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    @property
    def defs(self) -> dict[str, JsonDict]:
        return dict(self.schema.get("$defs", {}))

    def definition(self, name: str) -> JsonDict:
        return self.schema if name == _TITLES[self.key] else self.defs[name]

    # -------------------------------------------------------------------------- discovery
    def discover(self) -> None:
        """Sections in breadth-first order from the root; union members grouped under their kinds."""
        root = _TITLES[self.key]
        self.sections[root] = _Section(root, root.lower(), root)
        queue = [root]
        self.order.append(root)
        while queue:
            name = queue.pop(0)
            for prop, sub in self.definition(name).get("properties", {}).items():
                for ref, group in self._refs(prop, sub):
                    if ref in self.sections:
                        continue
                    if group is None:
                        self.sections[ref] = _Section(ref, ref.lower(), ref)
                        self.order.append(ref)
                    else:
                        prefix, title, kind = group
                        if prefix not in self.groups:
                            self.groups[prefix] = (title, prefix + "-kinds", [])
                            self.order.append("group:" + prefix)
                        self.groups[prefix][2].append(ref)
                        self.sections[ref] = _Section(ref, f"{prefix}-{kind}", f"`{kind}`", prefix, kind)
                    queue.append(ref)

    def _refs(self, prop: str, schema: JsonDict) -> Iterator[tuple[str, tuple[str, str, str] | None]]:
        """Referenced definitions in a property schema; members of a ``kind`` union carry their group."""
        if "$ref" in schema:
            yield schema["$ref"].rsplit("/", 1)[-1], None
        mapping = schema.get("discriminator", {}).get("mapping")
        if mapping:
            # In the union's declared order (the contract's table order), not the mapping's sorted one.
            prefix, title = _GROUPS.get(prop, (prop, f"`{prop}` kinds"))
            kinds = {ref: kind for kind, ref in mapping.items()}
            refs = [s["$ref"] for s in schema.get("oneOf", []) if s.get("$ref") in kinds]
            refs += [ref for ref in kinds if ref not in refs]
            for ref in refs:
                yield ref.rsplit("/", 1)[-1], (prefix, title, kinds[ref])
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in schema.get(key, []):
                yield from self._refs(prop, sub)
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                yield from self._refs(prop, schema[key])
        for sub in schema.get("patternProperties", {}).values():
            yield from self._refs(prop, sub)

    # -------------------------------------------------------------------------- types
    def link(self, ref: str) -> str:
        name = ref.rsplit("/", 1)[-1]
        section = self.sections.get(name)
        if section is None:
            return f"`{name}`"
        return f"[{section.title}](#{section.anchor})"

    def type_of(self, schema: JsonDict) -> str:
        """A human-readable type: ``duration``, ``list of [Call](#call)``, ``one of `a`, `b` ``..."""
        if "$ref" in schema:
            return self.link(schema["$ref"])
        mapping = schema.get("discriminator", {}).get("mapping")
        if mapping:
            first = self.sections.get(next(iter(mapping.values())).rsplit("/", 1)[-1])
            if first is not None and first.group in self.groups:
                return f"[{first.group}](#{self.groups[first.group][1]}) (by `kind`)"
        if "anyOf" in schema or "oneOf" in schema:
            parts = [self.type_of(s) for s in _alternatives(schema)]
            return " or ".join(dict.fromkeys(parts))
        if "const" in schema:
            return f"`{schema['const']}`"
        if "enum" in schema:
            return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
        kind = schema.get("type")
        if kind == "string":
            if _is_duration(schema):
                examples = schema.get("examples") or ["10s"]
                return "duration (" + ", ".join(f"`{e}`" for e in examples) + ")"
            if schema.get("pattern") == NAME_PATTERN:
                return "name"
            if "pattern" in schema:
                return f"string matching `{schema['pattern']}`"
            return "string"
        if kind in ("integer", "number"):
            bounds = _bounds(schema)
            return f"{kind}, {bounds}" if bounds else str(kind)
        if kind == "boolean":
            return "boolean"
        if kind == "array":
            items = schema.get("items", {})
            if "enum" in items:
                text = "list, each one of " + ", ".join(f"`{v}`" for v in items["enum"])
            else:
                text = "list of " + self.type_of(items) if items else "list"
            if schema.get("minItems"):
                text += f" (at least {schema['minItems']})"
            return text
        if kind == "object":
            for pattern, sub in schema.get("patternProperties", {}).items():
                key = "name" if pattern == NAME_PATTERN else "string"
                return f"map of {key} → {self.type_of(sub)}"
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                return f"map of string → {self.type_of(extra)}"
            return "map"
        if kind == "null":
            return "null"
        return "any"

    # -------------------------------------------------------------------------- tables
    def presence(self, model: str, prop: str, schema: JsonDict, required: bool) -> str:
        if required:
            return "required"
        if "default" in schema:
            value = schema["default"]
            if value is None:
                return "optional"
            if isinstance(value, int | float) and any(_is_duration(s) for s in _alternatives(schema)):
                return f"default `{format_duration(float(value))}`"
            return f"default `{flow_yaml(value)}`"
        if prop in self.defaults.get(model, {}):
            return f"default `{flow_yaml(self.defaults[model][prop])}`"
        return "optional"

    @staticmethod
    def describe(schema: JsonDict) -> str:
        return str(schema.get("description", ""))

    def table(self, name: str) -> list[str]:
        schema = self.definition(name)
        required = set(schema.get("required", []))
        rows = ["| Field | Type | Required / default | Description |", "|---|---|---|---|"]
        for prop, sub in schema.get("properties", {}).items():
            rows.append("| " + " | ".join(_cell(c) for c in (
                f"`{prop}`", self.type_of(sub), self.presence(name, prop, sub, prop in required),
                self.describe(sub))) + " |")
        return rows

    def intro(self, name: str) -> str:
        return self.describe(self.definition(name))

    def status_line(self, section: _Section) -> str | None:
        faults, expectations = self.supported
        known = {"fault": faults, "expectation": expectations}.get(section.group or "")
        if known is None or section.kind in known:
            return None
        return ("**Not implemented by this version.** The schema accepts it; `validate` (with an "
                "environment), `plan` and `run` refuse it with exit 2.")

    def render(self) -> str:
        title = _TITLES[self.key]
        out = [
            f"# {title} reference",
            "",
            "<!-- Generated from the JSON Schema by `python -m harness.model.reference`; do not edit. -->",
            "",
            _INTROS[self.key],
            "",
            f"The JSON Schema itself is [../schema/{self.key}.schema.json](../schema/{self.key}.schema.json) "
            "(also printed by `mesh-harness schema`). Durations are strings with a unit (`250ms`, `10s`, "
            "`2m`, `1.5s`), or Go's and Istio's compound form with the units from largest to smallest (`1m30s`, "
            "`1h30m`); a bare number, or a space between number and unit (`10 s`), is an error. Percentages "
            "are numbers from 0 to 100. A *name* (service, version, experiment) matches "
            "`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters. Unknown fields are errors.",
            "",
            _limits(self.key),
            "",
            "## Contents",
            "",
        ]
        for entry in self.order:
            if entry.startswith("group:"):
                gtitle, anchor, members = self.groups[entry.removeprefix("group:")]
                out.append(f"- [{gtitle}](#{anchor}): " + ", ".join(
                    f"[{self.sections[m].title}](#{self.sections[m].anchor})" for m in members))
            else:
                section = self.sections[entry]
                out.append(f"- [{section.title}](#{section.anchor})")
        for entry in self.order:
            out.append("")
            if entry.startswith("group:"):
                out += self._render_group(entry[6:])
            else:
                out += self._render_section(self.sections[entry], "##")
        return "\n".join(out).rstrip("\n") + "\n"

    def _render_section(self, section: _Section, level: str) -> list[str]:
        out = [f'<a id="{section.anchor}"></a>', "", f"{level} {section.title}", ""]
        intro = self.intro(section.name)
        if intro:
            out += [intro, ""]
        status = self.status_line(section)
        if status:
            out += [status, ""]
        return out + self.table(section.name)

    def _render_group(self, prefix: str) -> list[str]:
        title, anchor, members = self.groups[prefix]
        out = [f'<a id="{anchor}"></a>', "", f"## {title}", "",
               "Each entry is a mapping whose `kind` selects one of these:", "",
               "| kind | what it does | this version |", "|---|---|---|"]
        for member in members:
            section = self.sections[member]
            status = "not implemented yet (refused, exit 2)" if self.status_line(section) else "supported"
            out.append(f"| [{section.title}](#{section.anchor}) | {_cell(self.intro(member))} | {status} |")
        for member in members:
            out.append("")
            out += self._render_section(self.sections[member], "###")
        return out


def _limits(key: str) -> str:
    """The limits the loader enforces, stated from the constants that enforce them."""
    from harness.model.loader import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES
    from harness.model.suite import MAX_EXPERIMENT_S

    size = f"{MAX_FILE_BYTES // (1 << 20)} MiB" if MAX_FILE_BYTES % (1 << 20) == 0 else f"{MAX_FILE_BYTES // 1024} KiB"
    text = (f"Limits: a file is at most {size} of UTF-8 text (a byte-order mark, UTF-16 "
            f"or UTF-32 with one, and CRLF line ends are fine; tabs may not indent); mappings and lists nest at "
            f"most {MAX_DEPTH} levels deep; aliases may expand a document to at most {MAX_VALUES} values.")
    if key == "suite":
        text += (f" One experiment runs at most {format_compound(MAX_EXPERIMENT_S)}: baseline + fault + recovery, "
                 "see [Phases](#phases).")
    return text


def render_reference(key: str, schema: JsonDict) -> str:
    """The Markdown reference of one document (``suite`` or ``environment``) from its JSON Schema."""
    doc = _Document(key, schema, factory_defaults(), _supported())
    doc.discover()
    return doc.render()


def schema_text(schema: JsonDict) -> str:
    """The schema file's text: pretty, stable key order as pydantic emits it, newline-terminated."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def generated_files(docs_dir: Path) -> dict[Path, str]:
    """Every generated file under ``docs_dir`` with the text it must have."""
    all_schemas = schemas()
    files: dict[Path, str] = {}
    for key in DOCUMENTS:
        files[docs_dir / "reference" / f"{key}.md"] = render_reference(key, all_schemas[key])
    for key in DOCUMENTS:
        files[docs_dir / "schema" / f"{key}.schema.json"] = schema_text(all_schemas[key])
    return files


def stale_files(docs_dir: Path) -> list[Path]:
    """Generated files that are missing or differ from what the current schema produces."""
    stale = []
    for path, text in generated_files(docs_dir).items():
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != text:
            stale.append(path)
    return stale


def write_generated(docs_dir: Path) -> list[Path]:
    """Write the reference pages and schema files under ``docs_dir``; return every generated path.

    Files already up to date are left untouched (no needless mtime change), but are still returned,
    so the result is the same list whatever the state of the directory.
    """
    paths = []
    for path, text in generated_files(docs_dir).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != text:
            path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def _default_docs_dir() -> Path:
    """The repository's docs/ when running from a checkout, else ./docs."""
    root = Path(__file__).resolve().parents[2]
    return root / "docs" if (root / "pyproject.toml").is_file() else Path("docs")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness.model.reference [--check] [--docs DIR]``; exit 1 with --check if stale."""
    parser = argparse.ArgumentParser(prog="python -m harness.model.reference",
                                     description="Generate the suite/environment reference and schema files.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a generated file is missing or out of date")
    parser.add_argument("--docs", type=Path, default=None, help="docs directory (default: the repository's docs/)")
    args = parser.parse_args(argv)
    docs_dir: Path = args.docs or _default_docs_dir()
    if args.check:
        stale = stale_files(docs_dir)
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        if stale:
            print("regenerate with: python -m harness.model.reference", file=sys.stderr)
            return 1
        print(f"up to date: {len(generated_files(docs_dir))} generated file(s) in {docs_dir}")
        return 0
    for path in write_generated(docs_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
