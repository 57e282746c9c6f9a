"""What an experiment gives an Allure report: the picture, the categories, the environment; never a crash."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.report.allure import CATEGORIES, attach_experiment, write_categories, write_environment
from harness.report.timeline import timeline_png
from harness.runner.results import ExperimentResult, FaultRecord, PhaseRecord, StepRecord


def result(verdict: str = "fail") -> ExperimentResult:
    points = [{"t": float(s), "requests": 250, "success": 0.7 if 3 <= s < 8 else 1.0, "p50_ms": 8.0,
               "p99_ms": 300.0 if 3 <= s < 8 else 30.0} for s in range(12)]
    return ExperimentResult(
        "hidden-by-retries", verdict, 12.0,
        phases={"baseline": PhaseRecord(0.4, 3.0, 600), "fault": PhaseRecord(3.0, 8.0, 1200),
                "recovery": PhaseRecord(8.2, 11.5, 800)},
        faults=[FaultRecord("http-abort", "abort 30%", 3.0, 8.1, 9.0)],
        steps=[StepRecord(1, {"v1": 90, "v2": 10}, 3.0, 5.5, 600)], aborted_by="success_rate below 0.5",
        timeline=points)


def test_the_timeline_picture_is_a_png_and_needs_requests() -> None:
    picture = timeline_png(result())
    assert picture is not None
    assert picture.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(picture) > 10_000, "two panels with lines, shading and labels"
    assert timeline_png(ExperimentResult("empty", "error")) is None


def test_categories_tell_each_kind_of_failure_apart() -> None:
    """Each failure message the pytest items raise lands in exactly one category."""
    messages = {
        "Promise broken (verdict fail)": "harness.pytest_items.ExperimentFailed: fail: slo fail: success_rate ...",
        "Inconclusive (more data would settle it)": "harness.pytest_items.ExperimentFailed: inconclusive: x\ny",
        "Aborted by abort_if": "harness.pytest_items.ExperimentFailed: aborted: aborted: success_rate 0.4",
        "Mesh, fault or load error": "harness.pytest_items.ExperimentErrored: error: MeshError: cannot reach",
        "Bug in mesh-harness (see the crash report)": "harness.runner.results.ExperimentCrashed: internal error",
    }
    for expected, message in messages.items():
        hits = [c["name"] for c in CATEGORIES if re.fullmatch(c["messageRegex"], message)]
        assert hits == [expected], (message, hits)


def test_environment_and_categories_files(tmp_path: Path) -> None:
    write_categories(tmp_path / "allure")
    write_environment(tmp_path / "allure", [{"environment": "local", "mesh": "local", "envoy": "1.40.0 (wheel)",
                                             "services": "a (v1)\nb"}])
    assert json.loads((tmp_path / "allure" / "categories.json").read_text()) == CATEGORIES
    props = (tmp_path / "allure" / "environment.properties").read_text().splitlines()
    assert props == ["environment=local", "mesh=local", "envoy=1.40.0 (wheel)", "services=a (v1)\\nb"]


def test_without_allure_recording_nothing_is_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """No --alluredir: the picture is not even drawn (matplotlib stays unimported); nothing raises."""
    from harness.report import timeline

    drawn: list[str] = []
    monkeypatch.setattr(timeline, "timeline_png", lambda r: drawn.append(r.name))
    attach_experiment(result(), False, None, lambda: {"users": 5})
    assert drawn == []


def test_a_failing_report_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recording, but drawing fails: the experiment's verdict is untouched, nothing escapes."""
    from harness.report import timeline

    def broken(_: ExperimentResult) -> bytes:
        raise OSError("disk full")

    monkeypatch.setattr(timeline, "timeline_png", broken)
    attach_experiment(result(), True, None, lambda: {"users": 5})


def test_the_picture_is_made_again_from_the_results_json() -> None:
    """The results JSON alone is enough to draw it (to_json, then back): the same bytes' worth of PNG."""
    from harness.report.timeline import timeline_png_from_json

    data = json.loads(json.dumps(result().to_json()))
    picture = timeline_png_from_json(data)
    assert picture is not None
    assert picture.startswith(b"\x89PNG")


def test_certificate_stages_are_marked_and_survive_the_json() -> None:
    """Each confirmed certificate stage is a labelled line on the picture, drawn again from the JSON."""
    from harness.report.timeline import timeline_png_from_json
    from harness.runner.experiment import _certificate_marks

    class Mesh:
        def certificate_stages(self) -> list[dict[str, object]]:
            return [{"t": 103.0, "change": "c1", "stage": "overlap", "event": "start"},
                    {"t": 103.4, "change": "c1", "stage": "overlap", "event": "confirmed"},
                    {"t": 105.1, "change": "c1", "stage": "leaves", "event": "confirmed"},
                    {"t": 50.0, "change": "c0", "stage": "leaves", "event": "confirmed"}]  # an earlier run

    marks = _certificate_marks(Mesh(), 100.0)
    assert marks == [{"t": 3.4, "label": "certificates: overlap"}, {"t": 5.1, "label": "certificates: leaves"}]
    assert _certificate_marks(object(), 100.0) == []
    plain, marked = result(), result()
    marked.marks = marks
    with_marks = timeline_png(marked)
    assert with_marks is not None
    assert with_marks != timeline_png(plain)
    data = marked.to_json()
    assert data["marks"] == marks
    assert timeline_png_from_json(data) is not None
