"""JSON Schema of the two documents, for editors (yaml-language-server) and the generated reference."""

from __future__ import annotations

from typing import Any

from harness.model.environment import Environment
from harness.model.suite import Suite

__all__ = ["environment_schema", "schemas", "suite_schema"]


def _schema(model: type[Suite] | type[Environment], title: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = title
    return schema


def suite_schema() -> dict[str, Any]:
    return _schema(Suite, "mesh-harness Suite (harness/v1)")


def environment_schema() -> dict[str, Any]:
    return _schema(Environment, "mesh-harness Environment (harness/v1)")


def schemas() -> dict[str, dict[str, Any]]:
    return {"suite": suite_schema(), "environment": environment_schema()}
