"""The JSON Schema accepts the short forms the loader accepts, and shows defaults as users write them."""

from __future__ import annotations

from typing import Any

import pytest

from harness.model.schema import environment_schema, suite_schema

jsonschema = pytest.importorskip("jsonschema")


def _suite(fault: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "harness/v1", "kind": "Suite", "metadata": {"name": "s"},
            "spec": {"experiments": [{"name": "e", "faults": [fault]}]}}


class TestShortForms:
    def test_partition_sides_may_be_one_name(self) -> None:
        """`from: a` is as valid as `from: [a]` for an editor, as for the loader."""
        jsonschema.validate(_suite({"kind": "partition", "from": "a", "to": ["b", "c"]}), suite_schema())

    def test_cert_rotation_target_forms(self) -> None:
        """A name, `all`, a list, or `{service: X}` are all accepted."""
        for target in ("a", "all", ["a", "b"], {"service": "a"}):
            jsonschema.validate(_suite({"kind": "cert-rotation", "target": target}), suite_schema())

    def test_bare_version_key(self) -> None:
        """`versions: {v1: {}, v2: }` (a bare key) validates."""
        env = {"apiVersion": "harness/v1", "kind": "Environment", "metadata": {"name": "e"},
               "spec": {"gateway": {"service": "a"}, "services": [{"name": "a", "versions": {"v1": {}, "v2": None}}]}}
        jsonschema.validate(env, environment_schema())

    def test_wrong_shapes_still_fail(self) -> None:
        """The short forms did not make the schema permissive: a number is not a partition side."""
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(_suite({"kind": "partition", "from": 3, "to": ["b"]}), suite_schema())


def test_duration_defaults_are_duration_strings() -> None:
    """Defaults of duration fields read `1s`, never `1.0`, so an editor offers a value the loader takes."""
    settle = suite_schema()["$defs"]["Defaults"]["properties"]["settle"]
    assert settle["default"] == "1s"
