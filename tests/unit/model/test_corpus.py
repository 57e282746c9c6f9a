"""The corpus of broken documents (tests/corpus): each is refused at the line to change, saying what to write.

Every file under tests/corpus/suites and tests/corpus/environments is a small suite or environment with one
mistake users make (deep nesting, binary or Latin-1 files, tabs, bad indentation, wrong shapes, durations
that cannot be meant, unknown names...). tests/corpus/expected.yaml gives, for each, the line of the first
problem and a fragment of its message: the part that tells the user what to write instead. Files under
tests/corpus/valid are the accepted spellings (BOM, CRLF, UTF-16, Go durations, Istio modes) and must load.

The loader is checked directly, and ``validate`` is run over the whole corpus (in-process, through the real
command line) to check what a user actually sees: exit 2, FILE:LINE, and never a traceback.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from typer.testing import CliRunner

from harness._errors import InputError, Problem
from harness.cli import app
from harness.model.loader import Loaded, load_environment, load_suite

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
EXPECTED: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))
VALID = sorted((CORPUS / "valid").iterdir())
VALID_SUITE = CORPUS / "valid" / "suite.yaml"

INSTRUCTION = re.compile(
    r"\b(write|use|add|remove|delete|give|put|quote|indent|save|separate|shorten|mark|start|name|rename|"
    r"declare|pass|make|move|split|call|end the key|line it up)\b|did you mean|allowed here",
    re.IGNORECASE,
)
"""A message that names what to do: every corpus message must match (one of these verbs, or a choice)."""

"""Cases that fail only because of how the CLI (changed separately) reports them, not the loader."""


def _loader(name: str) -> Callable[[Path], Loaded[Any]]:
    return load_environment if name.startswith("environments/") else load_suite


def _first_problem(path: Path, loader: Callable[[Path], Loaded[Any]]) -> Problem:
    """The first problem (in line order) of the InputError ``loader`` must raise; any other outcome fails."""
    problems: list[Problem] = []
    try:
        loader(path)
    except InputError as exc:
        problems = exc.problems
    except Exception as exc:  # a short report: a RecursionError's frames take long to render
        pytest.fail(f"{type(exc).__name__} instead of InputError: {str(exc)[:300]}", pytrace=False)
    else:
        pytest.fail(f"{path} loaded, but it is in the corpus of broken documents", pytrace=False)
    assert problems, "an InputError carries at least one located problem"
    return min(problems, key=lambda p: (p.line, p.col))


class TestCorpus:
    @pytest.mark.parametrize("name", sorted(EXPECTED))
    def test_refused_at_the_line_with_what_to_write(self, name: str) -> None:
        """The first problem is at the expected FILE:LINE and its message says what to write instead."""
        path = CORPUS / name
        want = EXPECTED[name]
        first = _first_problem(path, _loader(name))
        assert first.file == str(path)
        assert str(first).startswith(f"{path}:{want['line']}:"), str(first)
        assert want["contains"] in first.message, str(first)
        assert INSTRUCTION.search(first.message), f"the message does not say what to do: {first.message}"

    @pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
    def test_accepted_spellings_load(self, path: Path) -> None:
        """BOM, CRLF, UTF-16 with a BOM, Go/Istio durations and Istio's mTLS and retryOn spellings load."""
        loader = load_environment if "environment" in path.name else load_suite
        assert loader(path).model is not None

    def test_every_corpus_file_has_an_expectation(self) -> None:
        """No file sits in the corpus untested, and no expectation names a file that is gone."""
        files = {p.relative_to(CORPUS).as_posix() for folder in ("suites", "environments")
                 for p in (CORPUS / folder).iterdir()}
        assert files == set(EXPECTED)

    def test_the_corpus_keeps_its_bytes(self) -> None:
        """CRLF and BOM cases are stored as written (tests/corpus/.gitattributes turns off EOL conversion)."""
        data = (CORPUS / "suites" / "bom-crlf-duration-with-space.yaml").read_bytes()
        assert data.startswith(b"\xef\xbb\xbf")
        assert b"\r\n" in data


class _Run(NamedTuple):
    code: int
    output: str


def _validate(name: str) -> _Run:
    """``mesh-harness validate`` on one corpus file, as a user runs it (an environment with --env).

    In-process (the command's whole path, from argument parsing to exit code, minus the interpreter's
    start-up): a subprocess per file cost ~1.5 s each, minutes for the corpus.
    """
    path = (CORPUS / name).resolve()
    args = (["validate", "--env", str(path), str(VALID_SUITE.resolve())] if name.startswith("environments/")
            else ["validate", str(path)])
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400", "NO_COLOR": "1"})
    return _Run(result.exit_code, result.stdout + result.stderr + (
        "".join(traceback.format_exception(result.exc_info[1])) if result.exc_info and
        not isinstance(result.exc_info[1], SystemExit) else ""))


@pytest.fixture(scope="module")
def cli_runs() -> dict[str, _Run]:
    """Every corpus case through the CLI, once for the module."""
    return {name: _validate(name) for name in sorted(EXPECTED)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cli_validate_refuses_with_exit_2_and_the_location(name: str, cli_runs: dict[str, _Run]) -> None:
    """``validate`` exits 2, prints FILE:LINE of the first problem, and never a traceback."""
    run = cli_runs[name]
    path = (CORPUS / name).resolve()
    assert "Traceback" not in run.output, run.output[-2000:]
    assert run.code == 2, run.output[-2000:]
    assert f"{path}:{EXPECTED[name]['line']}:" in run.output, run.output[-2000:]
