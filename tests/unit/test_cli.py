"""The command line's conventions and its error paths, in-process (no mesh is started here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness import __version__
from harness.cli import app

REPO = Path(__file__).resolve().parents[2]
RETRIES = REPO / "suites" / "retries.yaml"
LOCAL = REPO / "environments" / "local.yaml"


@pytest.fixture(name="state")
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private state root, so nothing of a real mesh is read or written."""
    root = tmp_path / "state"
    monkeypatch.setenv("MESH_HARNESS_STATE", str(root))
    monkeypatch.chdir(REPO)
    return root


def invoke(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


SCHEMA_ONLY = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: lone}
spec:
  experiments:
    - name: a
      faults: [{kind: http-abort, target: {service: nowhere}, percent: 10}]
"""


class TestConventions:
    def test_version(self, state: Path) -> None:
        """--version prints the package version and exits 0."""
        code, out, _ = invoke("--version")
        assert (code, out.strip()) == (0, f"mesh-harness {__version__}")

    @pytest.mark.parametrize("command", ["", "up", "status", "validate", "plan", "run", "cleanup"])
    def test_short_help_and_no_type_noise(self, state: Path, command: str) -> None:
        """-h works everywhere, and help names values (FILE, EXPR), never Python types like <bool>."""
        code, out, _ = invoke(*([command] if command else []), "-h")
        assert code == 0
        assert "Usage:" in out
        assert "<bool>" not in out
        assert "<list" not in out
        assert "<str>" not in out

    def test_completion_is_offered(self, state: Path) -> None:
        """Typer's shell completion is installed as an option of the root command."""
        _, out, _ = invoke("--help")
        assert "--install-completion" in out


class TestValidate:
    def test_ok_with_environment(self, state: Path) -> None:
        """A valid suite whose environment resolves is checked fully and passes."""
        code, out, _ = invoke("validate", str(RETRIES))
        assert (code, out.strip()) == (0, "ok: 1 suite(s) valid")

    def test_directory_is_expanded_like_pytest(self, state: Path) -> None:
        """A directory stands for the suites in it (environments beside them are skipped)."""
        code, out, _ = invoke("validate", str(REPO / "suites"))
        suites = len(list((REPO / "suites").glob("*.yaml")))
        assert (code, out.strip()) == (0, f"ok: {suites} suite(s) valid")

    def test_directory_without_suites_is_an_error(self, state: Path) -> None:
        """A directory holding no suite is refused, not reported as '0 suites ok'."""
        code, _, err = invoke("validate", str(REPO / "environments"))
        assert code == 2
        assert "no suite in this directory" in err

    def test_standard_input_is_read_once(self, state: Path) -> None:
        """`-` reads the suite from standard input (once: it is both checked and planned); problems say <stdin>."""
        code, out, _ = invoke("plan", "-", stdin=RETRIES.read_text())
        assert code == 0
        assert out.startswith("suite retries on environment local")
        code, _, err = invoke("validate", "-", stdin="kind: Suite\n\tx: 1\n")
        assert code == 2
        assert err.startswith("<stdin>:2:1: ")
        assert "tabs" in err

    def test_a_directory_named_like_a_suite_is_located(self, state: Path, tmp_path: Path) -> None:
        """A directory called x.yaml is reported as one input that is not a file, not searched for suites."""
        odd = tmp_path / "odd.yaml"
        odd.mkdir()
        code, _, err = invoke("validate", str(odd))
        assert code == 2
        assert err.startswith(f"{odd}")
        assert "directory" in err

    def test_says_which_checks_were_skipped(self, state: Path, tmp_path: Path) -> None:
        """Without an environment, ok is qualified: the skipped checks and how to run them are named."""
        lone = tmp_path / "lone.yaml"
        lone.write_text(SCHEMA_ONLY)
        code, out, err = invoke("validate", str(lone))
        assert code == 0
        assert "ok: 1 suite(s) valid" in out
        assert "only their schema was checked" in err
        assert "--env FILE" in err
        code, _, err = invoke("validate", str(lone), "--env", str(LOCAL))
        assert code == 2
        assert f"{lone}:7:" in err
        assert "no service 'nowhere'" in err

    def test_json_valid(self, state: Path, tmp_path: Path) -> None:
        """--json reports each suite, its environment and any skipped checks."""
        lone = tmp_path / "lone.yaml"
        lone.write_text(SCHEMA_ONLY)
        code, out, _ = invoke("validate", "--json", str(RETRIES), str(lone))
        data = json.loads(out)
        assert code == 0
        assert data["valid"] is True
        assert data["problems"] == []
        assert data["suites"][0]["environment"] == str(LOCAL)
        assert data["suites"][1]["environment"] is None
        assert data["suites"][1]["skipped"]

    def test_json_invalid_exits_2_with_located_problems(self, state: Path, tmp_path: Path) -> None:
        """Problems come as objects with file, line and column; the exit code stays 2."""
        bad = tmp_path / "bad.yaml"
        bad.write_text(SCHEMA_ONLY.replace("percent: 10", "percent: 1000"))
        code, out, _ = invoke("validate", "--json", str(bad))
        data = json.loads(out)
        assert code == 2
        assert data["valid"] is False
        [problem] = data["problems"]
        assert (problem["file"], problem["line"]) == (str(bad), 7)
        assert "100" in problem["message"]

    def test_environment_not_found_names_where_it_looked(self, state: Path) -> None:
        """--env nope says the name was not found and the paths it tried; no '<command line>' noise."""
        code, _, err = invoke("validate", str(RETRIES), "--env", "nope")
        assert code == 2
        assert "environment 'nope' not found" in err
        assert "environments/nope.yaml" in err
        assert "<command line>" not in err


class TestPlan:
    def test_text_names_the_changes(self, state: Path) -> None:
        """The text plan shows the phases, the fault's runtime keys and the edge policies."""
        code, out, _ = invoke("plan", str(RETRIES))
        assert code == 0
        assert out.startswith("suite retries on environment local (mesh: local)")
        assert "harness.fault.inbound.abort.percent -> 300000" in out
        assert "edge policies in force" in out

    def test_json_matches_the_text(self, state: Path) -> None:
        """--json carries the same plan as data: experiments, phases, faults with their runtime keys."""
        code, out, _ = invoke("plan", "--json", str(RETRIES))
        assert code == 0
        [plan] = json.loads(out)
        assert plan["suite"] == "retries"
        first = plan["experiments"][0]
        assert [p["name"] for p in first["phases"]] == ["baseline", "fault", "recovery"]
        [change] = first["faults"][0]["changes"]
        assert change["do"]["values"]["harness.fault.inbound.abort.percent"]["numerator"] == 300000
        assert change["do"]["nodes"] == ["reviews-v1-0", "reviews-v2-0", "reviews-v3-0"]
        assert change["undo"] == {"op": "runtime-clear", "nodes": change["do"]["nodes"],
                                  "keys": sorted(change["do"]["values"])}
        assert {e["edge"] for e in plan["edges"]} >= {"productpage->reviews", "reviews->ratings"}


class TestRun:
    def test_keyword_that_does_not_parse_is_a_usage_error(self, state: Path) -> None:
        """A -k expression that does not parse exits 2 before anything starts."""
        code, _, err = invoke("run", str(RETRIES), "-k", "ci and")
        assert code == 2
        assert "-k 'ci and'" in err
        assert not state.exists()

    def test_deep_keyword_is_an_error_not_a_crash(self, state: Path) -> None:
        """'not not … ci' is refused with exit 2, not a RecursionError."""
        code, _, err = invoke("run", str(RETRIES), "-k", "not " * 3000 + "ci")
        assert code == 2
        assert "nested deeper" in err


class TestInternalErrors:
    def test_a_bug_exits_4_with_a_crash_report_under_the_state_root(
            self, state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """An unexpected exception is exit 4, one line, and a report (holding the traceback) under the state root."""
        from harness.runner import plan

        def broken(*args: object) -> object:
            raise ZeroDivisionError("planted")

        monkeypatch.setattr(plan, "build_plan", broken)
        code, out, err = invoke("plan", str(RETRIES))
        assert code == 4
        assert "Traceback" not in out + err
        assert "internal error (a bug in mesh-harness" in err
        report = Path(err.split("the traceback is in ", 1)[1].split(";", 1)[0])
        assert report.parent == state / "crash"
        assert "ZeroDivisionError: planted" in report.read_text()
        assert "Traceback" in report.read_text()
        assert report.stat().st_mode & 0o777 == 0o600

    def test_unwritable_state_root_still_gives_exit_4(self, state: Path, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
        """If the state root cannot take a report, the temp directory does; the handler never crashes."""
        from harness.runner import plan

        blocker = tmp_path / "file-not-dir"
        blocker.write_text("")
        monkeypatch.setenv("MESH_HARNESS_STATE", str(blocker / "sub"))
        monkeypatch.setattr(plan, "build_plan", lambda *a: 1 / 0)
        code, _, err = invoke("plan", str(RETRIES))
        assert code == 4
        assert "Traceback" not in err
        assert "the traceback is in " in err
