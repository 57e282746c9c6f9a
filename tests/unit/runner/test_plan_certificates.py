"""``plan`` shows a certificate change as a run makes it: when in the fault phase it starts, and each stage
of a root rotation, with no mesh running."""

from __future__ import annotations

from pathlib import Path

from harness.mesh import open_driver
from harness.model.loader import load_environment, load_suite
from harness.runner.plan import build_plan, render_plan

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[3]

SUITE = """\
apiVersion: harness/v1
kind: Suite
metadata: {name: certs}
spec:
  defaults: {phases: {baseline: 2s, fault: 10s, recovery: 2s}}
  experiments:
    - name: root
      faults:
        - {kind: cert-rotation, what: ca, hold: 2s, at: 3s}
        - {kind: cert-untrusted, target: {service: reviews, version: v2}}
    - name: leaf
      faults:
        - {kind: cert-rotation, target: ratings}
"""


def test_plan_shows_when_each_certificate_change_starts_and_each_stage(tmp_path: Path) -> None:
    env = load_environment(REPO / "environments" / "local.yaml")
    (tmp_path / "s.yaml").write_text(SUITE)
    suite = load_suite(tmp_path / "s.yaml").model
    mesh = open_driver(env.model, env.path, tmp_path / "state")
    plan = build_plan(suite, env.model, mesh)
    text = render_plan(plan)
    root, untrusted = plan["experiments"][0]["faults"]
    assert root["at_s"] == 3.0
    assert len(root["changes"][0]["stages"]) == 3
    assert root["changes"][0]["undo"]["op"] == "certs-restore"
    assert "fault cert-rotation 3s into the fault phase: rotate the mesh's root CA" in text
    assert "    stage 1: overlap: publish the trust bundle [new root, current roots]" in text
    assert "    stage 2: re-issue every leaf" in text
    assert "held 2s under load" in text
    assert "    stage 3: retire the old root" in text
    assert "fault cert-untrusted during fault phase: give reviews-v2-0 a leaf of reviews" in text
    assert "fault cert-rotation as the fault window opens (1s into the phase): re-issue the leaves of ratings" \
        in text
    assert untrusted["changes"][0]["undo"] == {"op": "certs-restore", "nodes": {"reviews-v2-0": "reviews"},
                                               "leaves": {}, "trust": None}
    assert not (tmp_path / "state").exists()  # planning touched nothing
