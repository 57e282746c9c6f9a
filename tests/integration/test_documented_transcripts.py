"""The docs' transcripts that need a running mesh (up, status, run, down, pytest), run for real.

Each block runs top to bottom in a private state root, as a reader would type it; whatever it started
is taken down afterwards. Documented ``pytest`` command lines are checked by collecting with them.
"""

from __future__ import annotations

import glob
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from doccheck import REPO, Block, Command, all_blocks, mismatch
from meshtools import DEMO_ENV, cli

ONLINE = [b for b in all_blocks() if not b.offline and any(c.transcript for c in b.commands)]
PYTEST_LINES = [c for b in all_blocks() for c in b.commands
                if not c.transcript and c.argv[0] == "pytest"]


def _expand(argv: list[str]) -> list[str]:
    out: list[str] = []
    for arg in argv:
        found = sorted(glob.glob(arg, root_dir=REPO)) if any(ch in arg for ch in "*?[") else []
        out += found or [arg]
    return out


def _run(command: Command, state: Path) -> tuple[str, int]:
    """Run as a terminal shows it: stdout and stderr interleaved in the order they were written."""
    argv = _expand(command.argv)
    prefix = ["-c", "from harness.cli import main; main()"] if argv[0] == "mesh-harness" else ["-m", argv[0]]
    env = dict(os.environ, MESH_HARNESS_STATE=str(state), COLUMNS="200", PYTHONUNBUFFERED="1")
    result = subprocess.run([sys.executable, *prefix, *argv[1:]], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env, timeout=600, check=False)
    return result.stdout, result.returncode


@pytest.mark.parametrize("block", ONLINE, ids=lambda b: f"{b.page.relative_to(REPO)}:{b.line}")
def test_transcript_matches(block: Block, tmp_path: Path) -> None:
    """Each command of the block prints what the page says, in order, against a real mesh."""
    state = tmp_path / "state"
    try:
        for command in block.commands:
            if not command.transcript:
                continue
            output, code = _run(command, state)
            problem = mismatch(command, output, code)
            assert problem is None, problem
    finally:
        cli("down", "--env", str(DEMO_ENV), state=state)


@pytest.mark.parametrize("command", PYTEST_LINES, ids=lambda c: c.where)
def test_documented_pytest_line_collects(command: Command, tmp_path: Path) -> None:
    """pytest accepts every documented command line (checked by collecting with it, which starts nothing)."""
    argv = [a for a in _expand(command.argv[1:]) if a not in ("-q",)]
    if argv[:2] == ["-m", "pytest"]:
        argv = argv[2:]
    env = dict(os.environ, MESH_HARNESS_STATE=str(tmp_path / "state"))
    result = subprocess.run([sys.executable, "-m", "pytest", *argv, "--collect-only", "-q",
                             "-p", "no:cacheprovider"], capture_output=True, text=True, cwd=REPO, env=env,
                            timeout=300, check=False)
    assert result.returncode == 0, f"{command.where}: `{shlex.join(command.argv)}`\n{result.stdout}{result.stderr}"
