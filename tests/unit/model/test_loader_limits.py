"""Loader edge cases and limits: alias bombs, nesting, file size, exhaustion, encodings, phase lengths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import harness.mesh
import harness.model.loader as loader_module
from harness._errors import InputError
from harness.model.loader import MAX_DEPTH, MAX_FILE_BYTES, load_suite, parse_document
from harness.model.suite import DEFAULT_PHASES, LOAD_MARGIN_S, MAX_EXPERIMENT_S, Suite
from harness.runner import settings
from harness.runner.session import load_checked
from harness.traffic.load import MAX_DURATION_S

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
  mesh: consul
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

    def test_environment_problems_point_into_the_environment(self, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
        """An unsupported mesh is reported at the environment file's `mesh:` line, once (every mesh the schema
        names has a driver now: consul's is taken away for the test)."""
        monkeypatch.delitem(harness.mesh.DRIVERS, "consul")
        (tmp_path / "s.yaml").write_text(SUITE)
        (tmp_path / "t.yaml").write_text(SUITE)
        (tmp_path / "env.yaml").write_text(ENV)
        with pytest.raises(InputError) as info:
            load_checked([tmp_path / "s.yaml", tmp_path / "t.yaml"], None)
        [problem] = info.value.problems
        assert problem.file.endswith("env.yaml")
        assert (problem.line, problem.path) == (5, "spec.mesh")


# ----------------------------------------------------------------------------------- reading the file
PHASED = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: s}
spec:
  defaults:
    phases: {baseline: 5s, fault: 10s, recovery: 5s}
  experiments:
    - name: first
      faults:
        - {kind: http-abort, target: {service: a}, percent: 10}
    - name: second
      faults:
        - {kind: http-abort, target: {service: a}, percent: 10}
"""


def _refused(path: Path) -> InputError:
    with pytest.raises(InputError) as info:
        load_suite(path)
    return info.value


class TestReading:
    def test_nesting_at_the_limit_loads_and_one_more_level_is_refused(self, tmp_path: Path) -> None:
        """MAX_DEPTH levels (the root mapping counts as one) parse; one more is refused where it is crossed."""
        inside = MAX_DEPTH - 1
        data, _ = parse_document("a: " + "[" * inside + "]" * inside + "\n", "f")
        assert isinstance(data["a"], list)
        with pytest.raises(InputError, match=f"more than {MAX_DEPTH} levels") as info:
            parse_document("a: " + "[" * (inside + 1) + "]" * (inside + 1) + "\n", "f")
        [problem] = info.value.problems
        assert (problem.line, problem.col) == (1, 3 + inside + 1)

    @pytest.mark.parametrize("where", ["parse", "validate"])
    @pytest.mark.parametrize("error", [RecursionError, MemoryError])
    def test_exhaustion_is_an_input_error(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          where: str, error: type[BaseException]) -> None:
        """A RecursionError or MemoryError anywhere in reading a document is refused as input, not a crash."""
        def explode(*args: object, **kwargs: object) -> None:
            raise error

        if where == "parse":
            monkeypatch.setattr(loader_module, "_parse", explode)
        else:
            monkeypatch.setattr(Suite, "model_validate", explode)
        path = tmp_path / "s.yaml"
        path.write_text(PHASED)
        assert "too deeply nested or too large" in str(_refused(path))

    def test_a_file_too_large_to_be_a_suite(self, tmp_path: Path) -> None:
        """A file over MAX_FILE_BYTES is refused without being parsed."""
        path = tmp_path / "big.yaml"
        path.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
        assert "is this the right file?" in str(_refused(path))

    def test_a_fifo_is_not_read(self, tmp_path: Path) -> None:
        """A named pipe (or device) is refused instead of blocking on a read that never ends."""
        path = tmp_path / "pipe.yaml"
        os.mkfifo(path)
        assert "not a regular file" in str(_refused(path))

    def test_crlf_and_bom_keep_line_numbers(self, tmp_path: Path) -> None:
        """With a BOM and CRLF line ends, problems are still reported on the right line."""
        path = tmp_path / "s.yaml"
        path.write_bytes(b"\xef\xbb\xbf" + PHASED.replace("percent: 10}\n    - name: second",
                                                          "percent: 300}\n    - name: second").replace("\n", "\r\n")
                         .encode())
        assert [p.line for p in _refused(path).problems] == [10]


# -------------------------------------------------------------------------------------- phase lengths
class TestPhaseLengths:
    def write(self, tmp_path: Path, text: str) -> Path:
        path = tmp_path / "s.yaml"
        path.write_text(text)
        return path

    def test_the_limit_matches_the_load_generator(self) -> None:
        """The phases get the load generator's cap less the runner's margin; the runner merges the same defaults."""
        assert MAX_EXPERIMENT_S + LOAD_MARGIN_S == MAX_DURATION_S
        assert settings.DEFAULT_PHASES is DEFAULT_PHASES

    def test_exactly_the_limit_is_accepted(self, tmp_path: Path) -> None:
        """20m + 19m + 20m = 59m runs; one second more is refused on the fault line."""
        text = PHASED.replace("{baseline: 5s, fault: 10s, recovery: 5s}", "{baseline: 20m, fault: 19m, recovery: 20m}")
        load_suite(self.write(tmp_path, text))
        err = _refused(self.write(tmp_path, text.replace("fault: 19m", "fault: 19m1s")))
        assert [p.line for p in err.problems] == [6, 6]
        assert "shorten this to at most 19m" in err.problems[0].message

    def test_every_experiment_is_reported(self, tmp_path: Path) -> None:
        """Each experiment that runs too long is named in its own problem, all in one run of validate."""
        err = _refused(self.write(tmp_path, PHASED.replace("fault: 10s", "fault: 99999h")))
        assert ["'first'" in err.problems[0].message, "'second'" in err.problems[1].message] == [True, True]

    def test_the_experiments_own_phase_is_blamed(self, tmp_path: Path) -> None:
        """When the experiment sets the long phase, its line is reported, not the defaults."""
        text = PHASED.replace("    - name: second\n", "    - name: second\n      phases: {recovery: 2h}\n")
        err = _refused(self.write(tmp_path, text))
        assert [(p.line, p.path) for p in err.problems] == [(12, "spec.experiments[1].phases.recovery")]

    def test_built_in_defaults_count(self, tmp_path: Path) -> None:
        """Without defaults.phases, the built-in 5s/10s/5s are what the experiment's own phase adds to."""
        text = PHASED.replace("  defaults:\n    phases: {baseline: 5s, fault: 10s, recovery: 5s}\n", "")
        text = text.replace("    - name: second\n", "    - name: second\n      phases: {fault: 58m51s}\n")
        err = _refused(self.write(tmp_path, text))
        assert "shorten this to at most 58m50s" in err.problems[0].message

    def test_zero_fault_phase_after_the_merge(self, tmp_path: Path) -> None:
        """defaults fault: 0s is refused for experiments with faults, at the defaults line."""
        err = _refused(self.write(tmp_path, PHASED.replace("fault: 10s", "fault: 0s")))
        assert {p.line for p in err.problems} == {6}
        assert "give it a length, e.g. fault: 10s" in err.problems[0].message

    def test_zero_fault_phase_without_faults_is_fine(self, tmp_path: Path) -> None:
        """An experiment without faults may have no fault phase (a baseline-only measurement)."""
        text = PHASED.replace("fault: 10s", "fault: 0s").replace(
            "      faults:\n        - {kind: http-abort, target: {service: a}, percent: 10}\n", "")
        load_suite(self.write(tmp_path, text))

    def test_an_adaptive_phase_counts_at_its_max(self, tmp_path: Path) -> None:
        """`{min, max}` counts as max; the problem points at max."""
        err = _refused(self.write(tmp_path, PHASED.replace("fault: 10s", "fault: {min: 10s, max: 1h}")))
        assert err.problems[0].path == "spec.defaults.phases.fault.max"
