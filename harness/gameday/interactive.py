"""pytest plugin behind ``mesh-harness gameday --interactive``: before each experiment, the facilitator
decides — continue, skip, or abort the game day.

Loaded into the game day's child pytest with ``-p harness.gameday.interactive -s`` (``-s`` so that the
question reaches the terminal and the answer is read from it). Enter alone continues. End of input
aborts: an interactive game day with nobody to answer must not go on by itself.
"""

from __future__ import annotations

import sys

import pytest

__all__ = ["ask", "pytest_runtest_setup"]

QUESTION = "\nnext: {name} -- [c]ontinue, [s]kip, [a]bort? "


def ask(name: str) -> str:
    """``continue``, ``skip`` or ``abort``, as answered on standard input (asked again until it is one)."""
    while True:
        sys.stderr.write(QUESTION.format(name=name))
        sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            return "abort"
        answer = line.strip().lower() or "continue"
        for choice in ("continue", "skip", "abort"):
            if choice.startswith(answer):
                return choice
        sys.stderr.write("answer c, s or a\n")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.session.shouldstop:
        pytest.skip("the facilitator aborted the game day")
    choice = ask(item.nodeid)
    if choice == "skip":
        pytest.skip("skipped by the facilitator")
    if choice == "abort":
        item.session.shouldstop = "aborted by the facilitator"
        pytest.skip("aborted by the facilitator")
