"""The pytest plugin's error paths, in-process: collection errors and an environment that cannot open."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.mesh.local.driver import default_state_dir
from harness.runner.session import MeshSession, acquire_lock

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "environments" / "local.yaml"

SUITE = f"""\
apiVersion: harness/v1
kind: Suite
metadata: {{name: plugin}}
spec:
  environment: {LOCAL}
  experiments:
    - name: first
    - name: second
    - name: third
"""


@pytest.fixture(name="state")
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "state"
    monkeypatch.setenv("MESH_HARNESS_STATE", str(root))
    return root


def test_an_environment_that_cannot_open_fails_each_item_once_with_the_same_message(
        pytester: pytest.Pytester, state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One failed open is reported on every item of that environment, without retrying or a traceback."""
    pytester.makefile(".yaml", plugin=SUITE)
    opens: list[object] = []
    real_open = MeshSession.open

    def counted(self: MeshSession) -> None:
        opens.append(self)
        real_open(self)

    monkeypatch.setattr(MeshSession, "open", counted)
    lock = acquire_lock(default_state_dir(LOCAL, "local"))  # another "run" holds the mesh
    try:
        # -rN: no short summary, whose lines repeat the message or not depending on the terminal's width
        result = pytester.runpytest("-p", "no:locust", "-p", "no:cacheprovider", "-rN")
    finally:
        lock.close()
    result.assert_outcomes(failed=3)
    assert len(opens) == 1, "the environment's start was tried once, not once per item"
    text = result.stdout.str()
    assert text.count("is not available: another mesh-harness process") == 3
    assert "Traceback" not in text
    assert "AssertionError" not in text


def test_an_invalid_suite_is_a_collection_error_in_file_line_form(pytester: pytest.Pytester, state: Path) -> None:
    """A suite that does not validate is one collection error whose text is FILE:LINE:COL problems."""
    path = pytester.makefile(".yaml", broken=SUITE.replace("- name: second", "- name: Second_Bad"))
    result = pytester.runpytest("-p", "no:locust", "--collect-only")
    text = result.stdout.str()
    assert f"{path}:8:" in text
    assert "Traceback" not in text
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_a_deeply_nested_suite_is_a_collection_error_not_a_traceback(pytester: pytest.Pytester,
                                                                      state: Path) -> None:
    """Nesting thousands of levels deep is refused like any other bad input."""
    pytester.makefile(".yaml", deep="kind: Suite\nspec: " + "[" * 5000 + "]" * 5000 + "\n")
    result = pytester.runpytest("-p", "no:locust", "--collect-only")
    text = result.stdout.str()
    assert "Traceback" not in text
    assert "RecursionError" not in text
    assert "deep.yaml:2:" in text
    assert "nested" in text
