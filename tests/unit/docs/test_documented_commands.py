"""Every mesh-harness command the docs show is one the CLI accepts, and the output they claim is real.

Transcripts of commands that need no running mesh (validate, plan, schema, --version) are run here,
in-process; the others are run against a real mesh by tests/integration/test_documented_transcripts.py.
"""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
import typer
from doccheck import REPO, Command, all_blocks, mismatch
from typer.testing import CliRunner

from harness.cli import app

COMMANDS = [c for b in all_blocks() for c in b.commands if c.argv and c.argv[0] == "mesh-harness"]
OFFLINE_TRANSCRIPTS = [c for b in all_blocks() if b.offline for c in b.commands if c.transcript]


def _args(command: Command) -> list[str]:
    """argv after ``mesh-harness``, up to a pipe, with shell globs expanded from the repository root."""
    argv = command.argv[1:]
    if "|" in argv:
        argv = argv[:argv.index("|")]
    out: list[str] = []
    for arg in argv:
        found = sorted(glob.glob(arg, root_dir=REPO)) if any(ch in arg for ch in "*?[") else []
        out += found or [arg]
    return out


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.where)
def test_command_is_accepted(command: Command) -> None:
    """The subcommand and options exist, and every suite or environment file the command names exists."""
    group = typer.main.get_command(app)
    args = _args(command)
    try:
        if not args or args[0].startswith("-"):
            group.make_context("mesh-harness", list(args))
            return
        ctx = group.make_context("mesh-harness", [], resilient_parsing=True)
        sub = group.get_command(ctx, args[0])
        assert sub is not None, f"{command.where}: no command {args[0]}"
        sub_ctx = sub.make_context(args[0], args[1:], parent=ctx)
    except typer.Exit:
        return  # --version, --help: accepted
    except AssertionError:
        raise
    except Exception as exc:  # click's UsageError and friends
        pytest.fail(f"{command.where}: `{command.text}` is refused: {exc}")
    for key in ("suites",):
        for path in sub_ctx.params.get(key) or []:
            assert (REPO / path).exists(), f"{command.where}: {path} does not exist"
    env = sub_ctx.params.get("env")
    if env and ("/" in env or env.endswith(".yaml")):
        assert (REPO / env).exists(), f"{command.where}: --env {env} does not exist"


@pytest.mark.parametrize("command", OFFLINE_TRANSCRIPTS, ids=lambda c: c.where)
def test_offline_transcript_matches(command: Command, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Running the command prints what the page says it prints, and exits as the page says."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("MESH_HARNESS_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, _args(command))
    problem = mismatch(command, result.output, result.exit_code)
    assert problem is None, problem


def test_there_are_transcripts_to_check() -> None:
    """The check is not vacuous: the docs hold offline transcripts and commands."""
    assert len(OFFLINE_TRANSCRIPTS) >= 3
    assert len(COMMANDS) >= 10
