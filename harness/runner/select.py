"""``-k EXPR``: choosing experiments the way pytest's ``-k`` chooses tests.

The grammar is pytest's own (``_pytest/mark/expression.py``)::

    expression := or_expr? EOF
    or_expr    := and_expr ('or' and_expr)*
    and_expr   := not_expr ('and' not_expr)*
    not_expr   := 'not' not_expr | '(' or_expr ')' | ident

An identifier matches when it is a case-insensitive substring of the suite's name, the experiment's
name or one of its tags (tags are pytest markers too, so ``-k ci`` and ``-m ci`` agree).

It is parsed by a small recursive-descent parser, never ``eval``: the expression comes from a command
line or a game-day file. Nesting (parentheses and ``not``) is capped at :data:`MAX_DEPTH` so that
``not not not … ci`` or ten thousand parentheses give a clear error instead of a RecursionError.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from harness._errors import InputError
from harness.model.suite import Experiment, Suite

__all__ = ["MAX_DEPTH", "Matcher", "compile_keyword", "keyword_matcher"]

MAX_DEPTH = 50
"""No hand-written selection comes near it; pytest itself has no limit and recurses."""

Matcher = Callable[[str], bool]
"""Given a word, is it in the haystack (suite name, experiment name, tags)?"""

_TOKEN = re.compile(r"\s*(?:(?P<paren>[()])|(?P<word>[^\s()]+))")
_IDENT = re.compile(r"[\w.:\-\[\]+/\\]+")
_KEYWORDS = frozenset({"and", "or", "not"})


@dataclass(frozen=True)
class _Node:
    op: str  # "or", "and", "not", "ident"
    args: tuple[_Node, ...] = ()
    word: str = ""

    def __call__(self, has: Matcher) -> bool:
        if self.op == "ident":
            return has(self.word)
        if self.op == "not":
            return not self.args[0](has)
        if self.op == "and":
            return all(a(has) for a in self.args)
        return any(a(has) for a in self.args)


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens: list[tuple[str, int]] = []
        pos = 0
        while pos < len(expr):
            m = _TOKEN.match(expr, pos)
            if m is None or m.end() == pos:  # only trailing whitespace is left
                break
            word = m.group("paren") or m.group("word")
            self.tokens.append((word, m.start(m.lastgroup or 0)))
            pos = m.end()
        self.i = 0

    def fail(self, message: str) -> InputError:
        col = self.tokens[self.i][1] + 1 if self.i < len(self.tokens) else len(self.expr) + 1
        return InputError(f"-k '{self.expr}': {message} at column {col}")

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def take(self) -> str:
        token = self.tokens[self.i][0]
        self.i += 1
        return token

    def parse(self) -> _Node:
        if not self.tokens:
            return _Node("and")  # an empty expression selects everything, as in pytest
        node = self.or_expr(0)
        if self.peek() is not None:
            raise self.fail(f"unexpected '{self.peek()}'")
        return node

    def or_expr(self, depth: int) -> _Node:
        parts = [self.and_expr(depth)]
        while self.peek() == "or":
            self.take()
            parts.append(self.and_expr(depth))
        return parts[0] if len(parts) == 1 else _Node("or", tuple(parts))

    def and_expr(self, depth: int) -> _Node:
        parts = [self.not_expr(depth)]
        while self.peek() == "and":
            self.take()
            parts.append(self.not_expr(depth))
        return parts[0] if len(parts) == 1 else _Node("and", tuple(parts))

    def not_expr(self, depth: int) -> _Node:
        if depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels; simplify the expression")
        token = self.peek()
        if token is None:
            raise self.fail("expected a word, 'not' or '(' but the expression ended")
        if token == "not":
            self.take()
            return _Node("not", (self.not_expr(depth + 1),))
        if token == "(":
            self.take()
            if self.peek() == ")":
                raise self.fail("empty parentheses")
            inner = self.or_expr(depth + 1)
            if self.peek() != ")":
                raise self.fail("expected ')'")
            self.take()
            return inner
        if token in _KEYWORDS or token == ")":
            raise self.fail(f"expected a word, 'not' or '(' but found '{token}'")
        if not _IDENT.fullmatch(token):
            raise self.fail(f"'{token}' is not a word pytest -k accepts (letters, digits, _ . : - [ ] + / \\)")
        self.take()
        return _Node("ident", word=token.lower())


def compile_keyword(expr: str) -> Callable[[Matcher], bool]:
    """Parse ``expr`` once; the result evaluates it against any haystack. Bad input is an InputError."""
    return _Parser(expr).parse()


def keyword_matcher(expr: str | None) -> Callable[[Suite, Experiment], bool]:
    """pytest-style ``-k`` over suite name, experiment name and tags (see the module docstring)."""
    if not expr or not expr.strip():
        return lambda suite, exp: True
    tree = compile_keyword(expr)

    def match(suite: Suite, exp: Experiment) -> bool:
        fields = [f.lower() for f in (suite.metadata.name, exp.name, *exp.tags)]
        return tree(lambda word: any(word in f for f in fields))

    return match
