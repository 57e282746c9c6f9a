"""The generated reference and schema files: in step with the models, complete, and true to the contract.

CI relies on the first test to keep docs/ in step with the schema: change a model, then run
``python -m harness.model.reference`` and commit what it writes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from harness.model.loader import parse_document
from harness.model.reference import (
    flow_yaml,
    generated_files,
    main,
    render_reference,
    stale_files,
    write_generated,
)
from harness.model.schema import schemas

REPO = Path(__file__).resolve().parents[3]
DOCS = REPO / "docs"
SUITE_FORMAT = REPO.parent / "shared" / "SUITE-FORMAT.md"

# The kinds of SUITE-FORMAT §2 (the contract): the reference must document every one of them.
FAULT_KINDS = {
    "http-abort", "http-delay", "net-latency", "net-bandwidth", "net-reset", "partition", "kill", "pause",
    "traffic-shift", "cert-rotation", "cert-untrusted",
}
EXPECTATION_KINDS = {
    "slo", "retries", "circuit-breaker", "outlier-ejection", "timeout", "traffic-split", "canary", "mtls",
    "promql",
}


def test_generated_files_are_up_to_date() -> None:
    """docs/reference/*.md and docs/schema/*.json are exactly what the current models generate."""
    stale = stale_files(DOCS)
    assert not stale, (
        f"out of date: {', '.join(str(p.relative_to(REPO)) for p in stale)}; "
        "regenerate with: python -m harness.model.reference"
    )


def test_generation_is_deterministic() -> None:
    first = generated_files(DOCS)
    second = generated_files(DOCS)
    assert first == second
    for path, text in first.items():
        assert text.endswith("\n"), path
        assert not text.endswith("\n\n"), path


def test_check_reports_missing_and_changed_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check", "--docs", str(tmp_path)]) == 1
    written = write_generated(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "reference/environment.md", "reference/gameday.md", "reference/suite.md",
        "schema/environment.schema.json", "schema/gameday.schema.json", "schema/suite.schema.json",
    ]
    assert main(["--check", "--docs", str(tmp_path)]) == 0
    target = tmp_path / "reference" / "suite.md"
    target.write_text(target.read_text() + "edited by hand\n")
    capsys.readouterr()
    assert main(["--check", "--docs", str(tmp_path)]) == 1
    assert str(target) in capsys.readouterr().err


def _kinds_in_contract(title: str) -> set[str]:
    """The first-column kinds of one table of SUITE-FORMAT.md (``### Fault kinds`` ...)."""
    text = SUITE_FORMAT.read_text()
    section = text.split(f"### {title}", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([a-z-]+)` \|", section, flags=re.MULTILINE))


def test_kind_lists_match_the_contract() -> None:
    if not SUITE_FORMAT.is_file():
        pytest.skip(f"{SUITE_FORMAT} is not present")
    assert _kinds_in_contract("Fault kinds") == FAULT_KINDS
    assert _kinds_in_contract("Expectation kinds") == EXPECTATION_KINDS


@pytest.mark.parametrize(("group", "kinds"), [("fault", FAULT_KINDS), ("expectation", EXPECTATION_KINDS)])
def test_every_kind_has_its_own_section(group: str, kinds: set[str]) -> None:
    text = (DOCS / "reference" / "suite.md").read_text()
    for kind in sorted(kinds):
        assert f'<a id="{group}-{kind}"></a>\n\n### `{kind}`\n' in text, f"no section for {group} kind {kind}"


def test_links_resolve_to_anchors() -> None:
    for key, schema in schemas().items():
        text = render_reference(key, schema)
        anchors = set(re.findall(r'<a id="([^"]+)"></a>', text))
        links = set(re.findall(r"\]\(#([^)]+)\)", text))
        assert links <= anchors, f"{key}: dangling links {sorted(links - anchors)}"
        assert len(anchors) == len(re.findall(r'<a id="', text)), f"{key}: duplicate anchors"


def test_every_field_is_described() -> None:
    """A field without prose is a field a user has to guess at; describe it in descriptions.py."""
    for key, schema in schemas().items():
        section = ""
        for line in render_reference(key, schema).splitlines():
            if line.startswith("#"):
                section = line
            if line.startswith("| `") and not line.startswith("| [`"):
                cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
                assert cells[3], f"{key} {section}: field {cells[0]} has no description"


def test_schema_carries_every_description_for_editor_hovers() -> None:
    """Editors read descriptions from the schema file, not the reference: every model and field has one."""
    for key, schema in schemas().items():
        for name, definition in [(key, schema), *schema["$defs"].items()]:
            if "properties" not in definition:
                continue
            assert definition.get("description"), f"{key}: model {name} has no description"
            for prop, sub in definition["properties"].items():
                assert sub.get("description"), f"{key}: {name}.{prop} has no description"
    suite = schemas()["suite"]
    assert suite["$defs"]["RetriesExpectation"]["description"].startswith("The edge behaves as its retry")
    assert "``" not in str(suite), "reStructuredText literals leaked into the schema"


def test_duration_defaults_render_as_durations() -> None:
    text = render_reference("suite", schemas()["suite"])
    assert "| `settle` | duration (`250ms`, `10s`, `2m`) | default `1s` |" in text
    env = render_reference("environment", schemas()["environment"])
    assert "default `{v1: {replicas: 1}}`" in env
    assert "| `latency` | duration (`250ms`, `10s`, `2m`) | default `0s` |" in env


def test_flow_yaml() -> None:
    assert flow_yaml({"v1": {"replicas": 1}}) == "{v1: {replicas: 1}}"
    assert flow_yaml(["5xx", "503", "yes", "10s"]) == '[5xx, "503", "yes", 10s]'
    assert flow_yaml([True, None, 0.5, ""]) == '[true, null, 0.5, ""]'


def _documents(pattern: str) -> list[Path]:
    return sorted(REPO.glob(pattern))


def _load(path: Path) -> object:
    """Parse as the harness does (YAML 1.2 booleans: ``on:`` is a key, not ``True``), as editors do."""
    data, _ = parse_document(path.read_text(), str(path))
    return data


@pytest.mark.parametrize("path", _documents("suites/*.yaml"), ids=lambda p: p.name)
def test_schema_accepts_the_bundled_suites(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = schemas()["suite"]
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(_load(path))


@pytest.mark.parametrize("path", [REPO / "environments" / "local.yaml"], ids=lambda p: p.name)
def test_schema_accepts_the_bundled_environment(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = schemas()["environment"]
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(_load(path))


def test_schema_rejects_what_the_loader_rejects() -> None:
    """The schema is not vacuous: a bare-number duration and an unknown kind are errors in editors too."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(schemas()["suite"])
    doc: Any = _load(REPO / "suites" / "retries.yaml")
    doc["spec"]["defaults"]["phases"]["fault"] = 10
    assert not validator.is_valid(doc)
    doc = _load(REPO / "suites" / "retries.yaml")
    doc["spec"]["experiments"][0]["faults"][0]["kind"] = "http-explode"
    assert not validator.is_valid(doc)
