"""The Allure command line, found or installed, and the HTML report made with it (``mesh-harness report``).

An ``allure`` on PATH is used as it is: Allure 2 (the Java one, ``allure generate -o``) or Allure 3 (the
Node one). Without one, Allure 3 from npm at a pinned version, installed into the harness's cache outside
the repository (``mesh-harness install allure``, or on first use when npm is there), as the Go programs
are (:mod:`harness.install`). Allure 3 is configured through a config file (``singleFile`` for a report
that is one HTML file, the handiest CI artifact); Allure 2 has ``--single-file``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness._errors import InputError, MeshError
from harness.install import cache_root

__all__ = ["ALLURE_NPM_VERSION", "HISTORY_DIR", "HISTORY_FILE", "AllureCli", "find_allure", "generate",
           "install_allure"]

ALLURE_NPM_VERSION = "3.18.0"
"""The Allure 3 the harness installs from npm (the newest on the day it was pinned)."""


@dataclass(frozen=True)
class AllureCli:
    """An Allure command line: how to run it, and its major version (2: Java, 3: Node)."""

    argv: tuple[str, ...]
    major: int
    where: str


def _npm_dir() -> Path:
    return cache_root().parent / "npm" / "allure" / ALLURE_NPM_VERSION


def _cached() -> AllureCli | None:
    binary = _npm_dir() / "node_modules" / ".bin" / "allure"
    if binary.is_file() and os.access(binary, os.X_OK):
        return AllureCli((str(binary),), 3, f"Allure {ALLURE_NPM_VERSION} from npm ({_npm_dir()})")
    return None


def _major(argv: list[str]) -> int:
    """The major version an ``allure`` reports on a line of its own (``2.27.0``; ``3.18.0``), so that a
    warning of Java's or Node's on the way cannot decide it; 2 when it does not say."""
    try:
        done = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 2
    found = re.search(r"^\s*v?([23])\.\d+\.\d+\s*$", done.stdout, flags=re.MULTILINE)
    return int(found.group(1)) if found else 2


def find_allure() -> AllureCli | None:
    """``allure`` on PATH (whatever its version), else the one installed into the cache; None if neither."""
    on_path = shutil.which("allure")
    if on_path is not None:
        return AllureCli((on_path,), _major([on_path]), f"allure on PATH ({on_path})")
    return _cached()


def install_allure(npm: str | None = None) -> AllureCli:
    """Install Allure 3 from npm into the cache (or reuse it); an error naming what is missing otherwise.

    Installed into a staging directory beside its place and renamed into it, so two installs at once
    never leave half a tree."""
    existing = _cached()
    if existing is not None:
        return existing
    npm_exe = npm or shutil.which("npm")
    if npm_exe is None:
        raise MeshError("making the report needs Allure: put `allure` on PATH (Allure 2 or 3), or install npm "
                        "(Debian: apt install npm) so that mesh-harness can install Allure 3 from npm")
    target = _npm_dir()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".install-", dir=target.parent))
    except OSError as exc:
        raise MeshError(f"cannot write the harness's cache at {target.parent}: {exc}") from None
    try:
        done = subprocess.run([npm_exe, "install", "--no-audit", "--no-fund", "--prefix", str(staging),
                               f"allure@{ALLURE_NPM_VERSION}"], capture_output=True, text=True, timeout=900,
                              check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-10:])
            raise MeshError(f"`npm install allure@{ALLURE_NPM_VERSION}` failed (exit {done.returncode}):\n{tail}")
        try:
            os.replace(staging, target)
        except OSError as exc:
            if _cached() is None:  # another install won the race only if it left a usable one
                raise MeshError(f"cannot put Allure into {target}: {exc}; remove it and try again") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MeshError(f"cannot run `{npm_exe} install allure@{ALLURE_NPM_VERSION}`: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    found = _cached()
    if found is None:
        raise MeshError(f"npm installed allure@{ALLURE_NPM_VERSION} but no node_modules/.bin/allure is in {target}")
    return found


HISTORY_FILE = "allure-history.jsonl"
"""Allure 3's history under a history directory: one line per report built (its ``historyPath``)."""
HISTORY_DIR = "allure2-history"
"""Allure 2's history under a history directory: the ``history/`` of the last report, copied into the next
run's results before generating, which is how Allure 2 carries trends."""


def generate(results: Path, output: Path, single_file: bool = False, name: str = "mesh-harness",
             allure: AllureCli | None = None, history: Path | None = None) -> Path:
    """Build the HTML report of ``results`` into ``output``; returns its ``index.html``.

    The output directory is replaced (a report of older results left beside it would mislead); a file
    in its place, or results that are not a directory of Allure results, are input errors. With
    ``history`` (a directory, kept between runs), the report carries the trend of every report built
    with the same history before it, and adds itself to it."""
    if not results.is_dir() or not any(results.glob("*-result.json")):
        raise InputError(f"{results} holds no Allure results (*-result.json): run `pytest suites/ --alluredir "
                         f"{results}` first")
    _check_output(results, output)
    cli = allure or find_allure() or install_allure()
    # Made beside its place and swapped in: the old report stays whole if this one fails, and two reports
    # made at once never mix.
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    except OSError as exc:
        raise MeshError(f"cannot write the report beside {output}: {exc}") from None
    made = staging / "report"
    try:
        if history is not None:
            history.mkdir(parents=True, exist_ok=True)
        if cli.major >= 3:
            config = staging / "allurerc.json"
            options = {"reportName": name, "singleFile": single_file}
            settings: dict[str, object] = {"name": name, "output": str(made),
                                           "plugins": {"awesome": {"options": options}}}
            if history is not None:
                settings["historyPath"] = str((history / HISTORY_FILE).resolve())
            config.write_text(json.dumps(settings))
            _run([*cli.argv, "generate", str(results), "--output", str(made), "--config", str(config)], cli)
        else:
            if history is not None and (history / HISTORY_DIR).is_dir():
                shutil.copytree(history / HISTORY_DIR, results / "history", dirs_exist_ok=True)
            argv = [*cli.argv, "generate", str(results), "-o", str(made), "--clean", "--name", name]
            _run(argv + (["--single-file"] if single_file else []), cli)
            if history is not None and (made / "history").is_dir():
                shutil.rmtree(history / HISTORY_DIR, ignore_errors=True)
                shutil.copytree(made / "history", history / HISTORY_DIR)
        if not (made / "index.html").is_file():
            raise MeshError(f"{cli.where} made no index.html")
        if output.exists():
            shutil.rmtree(output)
        os.replace(made, output)
    except OSError as exc:
        raise MeshError(f"cannot write the report to {output}: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output / "index.html"


def _check_output(results: Path, output: Path) -> None:
    """The output is replaced: refuse one that is (or holds) the results, a file, or a directory that is
    not an earlier report (it would be deleted)."""
    out, res = output.resolve(), results.resolve()
    if out == res or res.is_relative_to(out):
        raise InputError(f"--output {output} is (or holds) the results {results}: write the report elsewhere, "
                         "e.g. --output allure-report")
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output} is a file, not a directory")
    if output.is_dir() and any(output.iterdir()) and not (output / "index.html").is_file():
        raise InputError(f"--output {output} is a directory with other things in it, not an earlier report, and "
                         "would be replaced: name an empty or new directory")


def _run(argv: list[str], cli: AllureCli) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MeshError(f"cannot run {cli.where}: {exc}") from None
    if done.returncode != 0:
        text = re.sub(r"\x1b\[[0-9;]*m", "", done.stderr or done.stdout).strip().splitlines()[-10:]
        raise MeshError(f"{cli.where} failed (exit {done.returncode}):\n" + "\n".join(text))
