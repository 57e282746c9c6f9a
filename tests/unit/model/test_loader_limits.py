"""Loader edge cases: alias bombs, implicit dates, environment problems located in the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness._errors import InputError
from harness.model.loader import load_suite
from harness.runner.session import load_checked

BOMB = """\
a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
kind: Suite
"""

SUITE = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: s}
spec:
  environment: env.yaml
  experiments:
    - name: e
      description: 2024-01-01
"""

ENV = """\
apiVersion: harness/v1
kind: Environment
metadata: {name: e}
spec:
  mesh: istio
  gateway: {service: a}
  services:
    - name: a
"""


class TestLimits:
    def test_alias_bomb_is_refused_quickly(self, tmp_path: Path) -> None:
        """A document whose aliases expand to millions of values is an InputError, not a hang."""
        path = tmp_path / "bomb.yaml"
        path.write_text(BOMB)
        with pytest.raises(InputError, match="expands to more than"):
            load_suite(path)

    def test_a_date_like_description_is_text(self, tmp_path: Path) -> None:
        """`description: 2024-01-01` stays the string the user wrote."""
        path = tmp_path / "s.yaml"
        path.write_text(SUITE)
        assert load_suite(path).model.spec.experiments[0].description == "2024-01-01"

    def test_environment_problems_point_into_the_environment(self, tmp_path: Path) -> None:
        """An unsupported mesh is reported at the environment file's `mesh:` line, once."""
        (tmp_path / "s.yaml").write_text(SUITE)
        (tmp_path / "t.yaml").write_text(SUITE)
        (tmp_path / "env.yaml").write_text(ENV)
        with pytest.raises(InputError) as info:
            load_checked([tmp_path / "s.yaml", tmp_path / "t.yaml"], None)
        [problem] = info.value.problems
        assert problem.file.endswith("env.yaml")
        assert (problem.line, problem.path) == (5, "spec.mesh")
