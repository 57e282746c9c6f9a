"""The hand-written pages of docs/: present, linked correctly, and in step with the CLI they describe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.cli import app

REPO = Path(__file__).resolve().parents[3]
DOCS = REPO / "docs"
PAGES = [
    "index.md", "cli.md", "pytest.md", "editor.md",
    "concepts/environment.md", "concepts/suites.md", "concepts/faults.md", "concepts/expectations.md",
    "concepts/local-mesh.md", "concepts/safety.md", "concepts/drivers.md", "concepts/toxiproxy.md",
]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text()
    explicit = set(re.findall(r'<a id="([^"]+)"></a>', text))
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", prose, flags=re.MULTILINE)}
    return explicit | headings


def _prose(text: str) -> str:
    """The text without fenced blocks and code spans, where `](...)` is code, not a link."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


@pytest.mark.parametrize("page", PAGES)
def test_page_exists(page: str) -> None:
    assert (DOCS / page).is_file(), page


@pytest.mark.parametrize("page", sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")))
def test_relative_links_resolve(page: str) -> None:
    source = DOCS / page
    for target in LINK.findall(_prose(source.read_text())):
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (source.parent / file_part).resolve() if file_part else source
        assert dest.exists(), f"{page}: link to missing {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page}: no anchor #{anchor} in {dest.relative_to(REPO)}"


def test_cli_page_covers_every_command() -> None:
    text = (DOCS / "cli.md").read_text()
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__ if command.callback else "")
        assert f"\n## {name}\n" in text, f"docs/cli.md has no section for `mesh-harness {name}`"
