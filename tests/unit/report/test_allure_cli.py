"""`mesh-harness report`'s Allure: which command line is used, and how each major version is driven.

A stand-in `allure` script (it records its arguments and writes the index.html a real one would) shows
the command lines; the real Allure 3 renders a real report in tests/integration/test_allure_html.py.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from harness._errors import InputError, MeshError
from harness.report import allure_cli
from harness.report.allure_cli import AllureCli, generate

SCRIPT = """#!/bin/sh
echo "$@" > "{log}"
out=""
prev=""
for a in "$@"; do
  if [ "$prev" = "-o" ] || [ "$prev" = "--output" ]; then out="$a"; fi
  if [ "$prev" = "--config" ]; then cp "$a" "{log}.config"; fi
  prev="$a"
done
mkdir -p "$out" && echo "<html></html>" > "$out/index.html"
"""


def stand_in(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "args"
    script = tmp_path / "allure"
    script.write_text(SCRIPT.format(log=log))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


def results(tmp_path: Path) -> Path:
    directory = tmp_path / "allure-results"
    directory.mkdir()
    (directory / "0-result.json").write_text("{}")
    return directory


def test_allure_3_gets_a_config_with_single_file(tmp_path: Path) -> None:
    script, log = stand_in(tmp_path)
    index = generate(results(tmp_path), tmp_path / "out", single_file=True, allure=AllureCli((str(script),), 3, "x"))
    assert index == tmp_path / "out" / "index.html"
    assert index.is_file()
    args = log.read_text().split()
    assert args[:3] == ["generate", str(tmp_path / "allure-results"), "--output"]
    assert Path(args[3]).parent.parent == tmp_path, "made beside its place, then swapped in"
    config = json.loads(Path(f"{log}.config").read_text())
    assert config["plugins"]["awesome"]["options"]["singleFile"] is True


def test_allure_2_gets_its_own_flags(tmp_path: Path) -> None:
    script, log = stand_in(tmp_path)
    generate(results(tmp_path), tmp_path / "out", single_file=True, allure=AllureCli((str(script),), 2, "x"))
    args = log.read_text().split()
    assert args[:3] == ["generate", str(tmp_path / "allure-results"), "-o"]
    assert args[4] == "--clean"
    assert args[-1] == "--single-file"
    assert (tmp_path / "out" / "index.html").is_file()


def test_no_results_or_a_file_as_output_are_input_errors(tmp_path: Path) -> None:
    script, _ = stand_in(tmp_path)
    cli = AllureCli((str(script),), 3, "x")
    with pytest.raises(InputError, match="holds no Allure results"):
        generate(tmp_path / "nothing", tmp_path / "out", allure=cli)
    (tmp_path / "afile").write_text("")
    with pytest.raises(InputError, match="is a file"):
        generate(results(tmp_path), tmp_path / "afile", allure=cli)


def test_an_allure_that_fails_is_a_mesh_error_with_its_words(tmp_path: Path) -> None:
    broken = tmp_path / "allure"
    broken.write_text("#!/bin/sh\necho 'boom: cannot read results' >&2\nexit 3\n")
    broken.chmod(0o755)
    with pytest.raises(MeshError, match="boom: cannot read results"):
        generate(results(tmp_path), tmp_path / "out", allure=AllureCli((str(broken),), 3, "allure x"))


def test_without_allure_or_npm_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert allure_cli.find_allure() is None
    with pytest.raises(MeshError, match="put `allure` on PATH"):
        allure_cli.install_allure()


def test_an_output_that_is_not_a_report_is_never_deleted(tmp_path: Path) -> None:
    """The output is replaced, so the results themselves, or a directory holding other things, are refused;
    an earlier report is replaced."""
    script, _ = stand_in(tmp_path)
    cli = AllureCli((str(script),), 3, "x")
    found = results(tmp_path)
    with pytest.raises(InputError, match="is \\(or holds\\) the results"):
        generate(found, found, allure=cli)
    with pytest.raises(InputError, match="is \\(or holds\\) the results"):
        generate(found, tmp_path, allure=cli)
    precious = tmp_path / "docs"
    precious.mkdir()
    (precious / "notes.md").write_text("keep me")
    with pytest.raises(InputError, match="not an earlier report"):
        generate(found, precious, allure=cli)
    assert (precious / "notes.md").read_text() == "keep me"
    earlier = tmp_path / "report"
    earlier.mkdir()
    (earlier / "index.html").write_text("old")
    (earlier / "stale.js").write_text("old")
    generate(found, earlier, allure=cli)
    assert sorted(p.name for p in earlier.iterdir()) == ["index.html"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report-")], "no staging left behind"
