"""The commands the docs show, and the output they claim, read out of the Markdown so tests can run them.

Two forms are recognised in fenced blocks of README.md and docs/**/*.md:

* a transcript (```text or ```console): ``$ COMMAND`` lines, each followed by the output it claims,
  up to the next ``$`` line. In the claimed output ``...`` matches any text within a line, a line that
  is only ``...`` matches any number of lines, and a last line ``[exit N]`` claims the exit code
  (without it, 0 is claimed);
* a script (```sh, ```shell, ```bash): every line starting with ``mesh-harness`` or ``pytest`` is a
  command; what it prints is not claimed, but the command must be one the CLI accepts.

Why: documented commands and outputs drifted from the code twice; a page that is run cannot.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
FENCE = re.compile(r"^```(\w*)\s*$")
EXIT = re.compile(r"^\[exit (\d+)\]$")

OFFLINE = frozenset({"validate", "plan", "schema", "capabilities", "--version", "-h", "--help"})
"""Subcommands that need no running mesh: their transcripts are checked by the unit tests."""


@dataclass
class Command:
    page: Path
    line: int
    text: str
    expected: list[str] = field(default_factory=list)
    exit_code: int = 0
    transcript: bool = True

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text, comments=True)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def offline(self) -> bool:
        argv = self.argv
        return argv[0] == "mesh-harness" and len(argv) > 1 and argv[1] in OFFLINE


@dataclass
class Block:
    page: Path
    line: int
    commands: list[Command]

    @property
    def offline(self) -> bool:
        return all(c.offline for c in self.commands)


def blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page`` that holds at least one command."""
    out: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i + 1
        end = start
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        body = lines[start:end]
        commands = _transcript(page, start, body) if lang in ("text", "console") else (
            _script(page, start, body) if lang in ("sh", "shell", "bash") else [])
        if commands:
            out.append(Block(page, start, commands))
        i = end + 1
    return out


def _transcript(page: Path, start: int, body: list[str]) -> list[Command]:
    commands: list[Command] = []
    for n, line in enumerate(body):
        if line.startswith("$ "):
            commands.append(Command(page, start + n + 1, line[2:]))
        elif commands:
            m = EXIT.match(line.strip())
            if m:
                commands[-1].exit_code = int(m.group(1))
            else:
                commands[-1].expected.append(line)
    return commands


def _script(page: Path, start: int, body: list[str]) -> list[Command]:
    out = []
    for n, line in enumerate(body):
        stripped = line.strip()
        if stripped.startswith(("mesh-harness ", "pytest ", "python3 -m pytest ")):
            for part in re.split(r"\s+&&\s+", stripped):
                out.append(Command(page, start + n + 1, part, transcript=False))
    return out


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks(page)]


def matches(expected: list[str], actual: list[str]) -> bool:
    """Does ``actual`` fit ``expected``, with ``...`` wildcards (see the module docstring)?"""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(matches(rest, actual[k:]) for k in range(len(actual) + 1))
    if not actual:
        return False
    pattern = "^" + ".*".join(re.escape(part) for part in head.rstrip().split("...")) + "$"
    return re.match(pattern, actual[0].rstrip()) is not None and matches(rest, actual[1:])


def mismatch(command: Command, actual: str, code: int) -> str | None:
    """Why the output does not match the page (None when it does)."""
    lines = actual.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if code != command.exit_code:
        return f"{command.where}: `{command.text}` exited {code}, the page says {command.exit_code}:\n{actual}"
    if not matches(command.expected, lines):
        return (f"{command.where}: `{command.text}` printed\n{actual}\nbut the page says\n"
                + "\n".join(command.expected))
    return None
