"""What an experiment gives an Allure report (``pytest --alluredir DIR``), beyond pass or fail.

Each experiment is one Allure test with a step per phase, fault and expectation (a failed expectation is a
failed step, an inconclusive one a broken step), and attachments a reader needs without the run at hand:
the timeline picture, the verdict table, the changes made to the mesh, the load, the suite's YAML and the
results JSON. At the end of the session the results directory gets ``environment.properties`` (mesh,
Envoy, topology) and ``categories.json``, which tells a broken promise, an inconclusive verdict, an
abort, a mesh error and a bug of ours apart on the report's Categories tab.

Nothing here may change a verdict: every call is guarded, and does nothing when allure-pytest is not
recording.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from uuid import uuid4

from harness.runner.results import ExperimentResult

__all__ = ["CATEGORIES", "attach_experiment", "write_categories", "write_environment"]

CATEGORIES: list[dict[str, Any]] = [
    {"name": "Promise broken (verdict fail)", "matchedStatuses": ["failed"],
     "messageRegex": r"[\s\S]*ExperimentFailed: fail:[\s\S]*"},
    {"name": "Inconclusive (more data would settle it)", "matchedStatuses": ["failed"],
     "messageRegex": r"[\s\S]*ExperimentFailed: inconclusive:[\s\S]*"},
    {"name": "Aborted by abort_if", "matchedStatuses": ["failed"],
     "messageRegex": r"[\s\S]*ExperimentFailed: aborted:[\s\S]*"},
    {"name": "Mesh, fault or load error", "matchedStatuses": ["broken", "failed"],
     "messageRegex": r"[\s\S]*(ExperimentErrored|EnvironmentUnavailable|HarnessError|MeshError|FaultError)[\s\S]*"},
    {"name": "Bug in mesh-harness (see the crash report)", "matchedStatuses": ["broken", "failed"],
     "messageRegex": r"[\s\S]*(ExperimentCrashed|internal error)[\s\S]*"},
]
r"""Allure's categories, matched against the failure message (``<exception>: <verdict>: <first problem>``).
``[\s\S]*`` rather than a ``(?s)`` flag: Allure 2 matches with Java's regex, Allure 3 with JavaScript's,
which knows no inline flags."""


class VerdictFail(AssertionError):
    """An expectation's step that failed (Allure counts an AssertionError a failure)."""


class VerdictInconclusive(Exception):
    """An expectation's step that was neither shown kept nor shown broken (Allure: broken)."""


def attach_experiment(result: ExperimentResult, recording: bool, suite_path: Path | None = None,
                      load: Callable[[], Mapping[str, Any]] | None = None) -> None:
    """Steps and attachments for the Allure test now running. ``recording``: whether allure-pytest writes
    results (``--alluredir``); without it nothing is drawn (matplotlib is not even imported)."""
    if not recording:
        return
    try:
        import allure
        from allure_commons import plugin_manager

        _steps(allure, plugin_manager.hook, result)
        _attachments(allure, result, suite_path, load() if load is not None else None)
    except Exception:  # reporting must never change a verdict
        return


def _step(hook: Any, allure: Any, title: str, attach: tuple[str, str] | None = None,
          failure: Exception | None = None) -> None:
    """One finished step, made through allure's own hooks: a failed or broken step carries its message
    and no Python traceback (``allure.step`` would record where the marker exception was raised)."""
    uuid = str(uuid4())
    hook.start_step(uuid=uuid, title=title, params={})
    if attach is not None:
        allure.attach(attach[1], name=attach[0], attachment_type=allure.attachment_type.TEXT)
    hook.stop_step(uuid=uuid, exc_type=type(failure) if failure else None, exc_val=failure, exc_tb=None)


def _steps(allure: Any, hook: Any, result: ExperimentResult) -> None:
    for name, phase in result.phases.items():
        _step(hook, allure, f"phase {name}: {phase.start:.1f}–{phase.end:.1f} s, {phase.requests:,} requests")
    for fault in result.faults:
        removed = "not removed" if fault.removed_at is None else f"removed at {fault.removed_at:.1f} s"
        activation = "" if fault.activation_ms is None else f", in force after {fault.activation_ms:.0f} ms"
        _step(hook, allure, f"fault {fault.kind}: applied at {fault.applied_at:.1f} s, {removed}{activation}",
              ("change", fault.description))
    for outcome in result.expectations:
        failure: Exception | None = (VerdictFail(outcome.message) if outcome.verdict == "fail" else
                                     VerdictInconclusive(outcome.message) if outcome.verdict == "inconclusive"
                                     else None)
        _step(hook, allure, f"{outcome.verdict}: {outcome.expected}", ("verdict", outcome.message), failure)


def _attachments(allure: Any, result: ExperimentResult, suite_path: Path | None,
                 load: Mapping[str, Any] | None) -> None:
    from harness.report.table import render_table
    from harness.report.timeline import timeline_png

    picture = timeline_png(result)
    if picture is not None:
        allure.attach(picture, name="timeline", attachment_type=allure.attachment_type.PNG)
    allure.attach(render_table([result], width=140), name="expectations",
                  attachment_type=allure.attachment_type.TEXT)
    changes = [f"{f.applied_at:7.2f} s  {f.kind}: {f.description}" for f in result.faults]
    changes.append(f"rollback: {result.rollback_actions} change(s) undone, "
                   f"{'complete' if result.rollback_complete else 'INCOMPLETE: run mesh-harness cleanup'}")
    allure.attach("\n".join(changes), name="changes", attachment_type=allure.attachment_type.TEXT)
    allure.attach(_load_summary(result, load), name="load", attachment_type=allure.attachment_type.TEXT)
    if suite_path is not None and suite_path.is_file():
        allure.attach.file(str(suite_path), name=suite_path.name, attachment_type=allure.attachment_type.YAML)
    allure.attach(json.dumps(result.to_json(), indent=2), name="results.json",
                  attachment_type=allure.attachment_type.JSON)


def _load_summary(result: ExperimentResult, load: Mapping[str, Any] | None) -> str:
    lines = [f"{k}: {v}" for k, v in (load or {}).items()]
    for name, phase in result.phases.items():
        seconds = max(phase.end - phase.start, 1e-9)
        lines.append(f"{name}: {phase.requests:,} requests in {seconds:.1f} s ({phase.requests / seconds:.0f} req/s)")
    return "\n".join(lines)


def write_environment(directory: Path, meshes: Iterable[Mapping[str, Any]]) -> None:
    """``environment.properties``: one block of keys per environment the session ran against."""
    lines: list[str] = []
    for n, mesh in enumerate(meshes):
        prefix = "" if n == 0 else f"{mesh.get('environment', n)}."
        lines += [f"{prefix}{key}={_escape(str(value))}" for key, value in mesh.items()]
    if lines:
        directory.mkdir(parents=True, exist_ok=True)
        # Allure reads .properties as ISO-8859-1; anything beyond it is written as a \\uXXXX escape.
        (directory / "environment.properties").write_bytes(
            ("\n".join(lines) + "\n").encode("latin-1", errors="backslashreplace"))


def write_categories(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "categories.json").write_text(json.dumps(CATEGORIES, indent=2))


def _escape(value: str) -> str:
    """A .properties value on one line."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")
