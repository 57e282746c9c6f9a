"""Which files a command line names: suite files, and directories of them, as pytest collects.

``pytest suites/`` takes a directory, so ``mesh-harness validate suites/`` does too: every ``*.yaml`` /
``*.yml`` below it whose text declares ``kind: Suite`` (environments and unrelated YAML beside the
suites are not suites, and are skipped the way pytest skips files it does not collect).
"""

from __future__ import annotations

from pathlib import Path

from harness._errors import InputError

__all__ = ["expand_suite_args", "looks_like_suite"]

_SNIFF_BYTES = 4096


def looks_like_suite(path: Path) -> bool:
    """Cheap sniff so that environments and unrelated YAML are never collected."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return False
    return any(line.strip().replace(" ", "") == "kind:Suite" for line in head.splitlines())


def expand_suite_args(args: list[Path]) -> list[Path]:
    """Files stay as given (the loader reports what is wrong with them); directories become their suites.

    A directory with no suite in it is an error: a typo'd directory must not pass as "0 suites, ok".
    Duplicates (``suites/ suites/retries.yaml``) are kept once, in first-seen order. ``-`` (standard
    input) stays as it is, for the loader to read once.
    """
    out: list[Path] = []
    for arg in args:
        # A directory named like a YAML file is a mistake about one file: the loader says what it is.
        if arg.is_dir() and arg.suffix not in (".yaml", ".yml"):
            found = sorted(p for p in arg.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(arg).parts)
                           and looks_like_suite(p))
            if not found:
                raise InputError(f"{arg}: no suite in this directory (no *.yaml file with kind: Suite)")
            out += found
        else:
            out.append(arg)
    return list(dict.fromkeys(out))
