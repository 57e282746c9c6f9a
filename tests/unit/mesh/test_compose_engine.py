"""Without a Docker engine, ``mesh: compose`` says what is missing and how to get it (exit 3), never a
traceback; and the refusal of ``partition via: network`` where it cannot be done, at the fault's line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness._errors import MeshError
from harness.mesh.compose.engine import engine
from harness.model.loader import load_environment, load_suite
from harness.runner.checks import check_suite

REPO = Path(__file__).resolve().parents[3]


def test_no_daemon_is_named_with_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(MeshError) as caught:
        engine()
    message = str(caught.value)
    assert "needs a running Docker engine" in message
    assert "apt-get install docker.io" in message
    assert "compose-images" in message


def test_up_without_an_engine_exits_3_with_the_reason(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock", "MESH_HARNESS_STATE": str(tmp_path / "state"),
           "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", "up", "--env",
                          str(REPO / "environments" / "compose.yaml")], capture_output=True, text=True, env=env,
                         cwd=REPO, check=False, timeout=60)
    assert run.returncode == 3, run.stderr
    assert "Traceback" not in run.stderr
    assert "needs a running Docker engine" in run.stderr
    assert not (tmp_path / "state").exists() or not list((tmp_path / "state").rglob("state.json"))


SUITE = """\
apiVersion: harness/v1
kind: Suite
metadata: {{name: via}}
spec:
  experiments:
    - name: a
      faults:
        - {fault}
"""


def _problems(tmp_path: Path, env_name: str, fault: str) -> list[str]:
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(SUITE.format(fault=fault))
    env = load_environment(REPO / "environments" / f"{env_name}.yaml")
    return [str(p) for p in check_suite(load_suite(suite_file), env.model, str(env.path), env.positions)]


def test_partition_via_network_is_refused_on_the_local_mesh(tmp_path: Path) -> None:
    found = _problems(tmp_path, "local", "{kind: partition, from: details, to: productpage, via: network}")
    assert any(":8:" in p and "the local mesh cannot partition via: network: its processes share" in p
               for p in found), found


def test_partition_via_network_is_accepted_on_compose_when_it_names_every_peer(tmp_path: Path) -> None:
    assert _problems(tmp_path, "compose", "{kind: partition, from: details, to: productpage, via: network}") == []


@pytest.mark.parametrize(("fault", "says"), [
    ("{kind: partition, from: reviews, to: ratings, via: network}",
     "productpage is not in to: add it to to:, or use via: proxy"),
    ("{kind: partition, from: details, to: productpage, via: network, mode: reject}",
     "cannot refuse connections"),
    ("{kind: partition, from: productpage, to: [details, reviews], via: network}",
     "the gateway calls productpage"),
])
def test_partition_via_network_that_would_cut_more_is_refused(tmp_path: Path, fault: str, says: str) -> None:
    """A disconnected instance loses every peer: a suite must say so, and cannot ask it to refuse."""
    found = _problems(tmp_path, "compose", fault)
    assert any(says in p for p in found), found
