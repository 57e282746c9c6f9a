"""JSON Schema of the two documents, for editors (yaml-language-server) and the generated reference.

Every definition and property carries its user-facing ``description`` (from
``harness.model.descriptions``), so an editor shows on hover what the reference says.
"""

from __future__ import annotations

from typing import Any

from harness.model.common import NAME_PATTERN
from harness.model.descriptions import describe_schema
from harness.model.durations import DURATION_PATTERN, format_duration
from harness.model.environment import Environment
from harness.model.gameday import GameDay
from harness.model.suite import Suite

__all__ = ["environment_schema", "schemas", "suite_schema"]


def _is_duration(prop: dict[str, Any]) -> bool:
    branches = [prop, *prop.get("anyOf", [])]
    return any(b.get("pattern") == DURATION_PATTERN for b in branches)


def _accept_short_forms(schema: dict[str, Any]) -> None:
    """Teach the schema the short forms the loader accepts, so editors do not flag valid documents.

    A duration default is shown as the string a user would write (``1s``, not ``1.0``); ``from``/``to``
    of a partition may be one name; ``cert-rotation`` targets may be a name or ``{service: X}``; a
    version may be given as a bare key (``v2:``).
    """
    defs = schema.get("$defs", {})
    for definition in defs.values():
        for prop in definition.get("properties", {}).values():
            if _is_duration(prop) and isinstance(prop.get("default"), int | float):
                prop["default"] = format_duration(float(prop["default"]))
    partition = defs.get("Partition", {}).get("properties", {})
    for key in ("from", "to"):
        if key in partition:
            single = dict(partition[key]["items"])
            partition[key] = {"anyOf": [single, {k: v for k, v in partition[key].items() if k != "title"}],
                              "title": partition[key].get("title", key)}
    rotation = defs.get("CertRotation", {}).get("properties", {}).get("target")
    if rotation is not None:
        name = {"type": "string", "pattern": NAME_PATTERN}
        rotation["anyOf"] = [*rotation.get("anyOf", []), name,
                             {"type": "object", "properties": {"service": name}, "required": ["service"],
                              "additionalProperties": False}]
    versions = defs.get("Service", {}).get("properties", {}).get("versions")
    if versions is not None:
        for pattern, value in versions.get("patternProperties", {}).items():
            versions["patternProperties"][pattern] = {"anyOf": [value, {"type": "null"}]}


def _schema(model: type[Suite] | type[Environment] | type[GameDay], title: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = title
    _accept_short_forms(schema)
    describe_schema(schema, model.__name__)
    return schema


def suite_schema() -> dict[str, Any]:
    return _schema(Suite, "mesh-harness Suite (harness/v1)")


def environment_schema() -> dict[str, Any]:
    return _schema(Environment, "mesh-harness Environment (harness/v1)")


def gameday_schema() -> dict[str, Any]:
    return _schema(GameDay, "mesh-harness GameDay (harness/v1)")


def schemas() -> dict[str, dict[str, Any]]:
    return {"suite": suite_schema(), "environment": environment_schema(), "gameday": gameday_schema()}
