"""The compose project a mesh is run as: who owns each network namespace, what is published and mounted,
the addresses, and the images' contents; nothing here needs Docker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness._errors import MeshError
from harness.mesh.compose import images, project
from harness.mesh.compose.export import compose_yaml
from harness.mesh.local.topology import build_layout
from harness.model.loader import load_environment

REPO = Path(__file__).resolve().parents[3]
ENV = load_environment(REPO / "environments" / "compose.yaml").model


def _rendered(root: Path = Path("/state/mesh")) -> tuple[dict, object]:
    layout = build_layout(ENV, 100000, ports_from=30000)
    layout.bind = "0.0.0.0"
    layout.addresses = project.addresses(layout, "10.50.1.0/24", "10.50.2.0/24")
    imgs = project.Images("envoy:x", "demo:x", "prom:x", "toxi:x")
    return project.render(ENV, layout, root, imgs, root / "prometheus" / "prometheus.yml"), layout


def test_each_app_joins_its_sidecars_namespace_and_the_sidecar_publishes_its_ports() -> None:
    """The sidecar owns the namespace (kill/pause of the app leave it), and publishes admin, app and inbound
    ports on the host's 127.0.0.1 only, the same numbers inside."""
    doc, layout = _rendered()
    for inst in layout.instances:
        app = doc["services"][inst.id]
        sidecar = doc["services"][f"{inst.id}-envoy"]
        assert app["network_mode"] == f"service:{inst.id}-envoy"
        assert "ports" not in app
        assert "networks" not in app
        assert sorted(sidecar["ports"]) == sorted(f"127.0.0.1:{p}:{p}" for p in
                                                  (inst.admin_port, inst.app_port, inst.inbound_port))
        assert sidecar["networks"]["mesh"]["ipv4_address"] == layout.address(inst.id)
        assert sidecar["networks"]["control"]["priority"] > sidecar["networks"]["mesh"].get("priority", 0)
        assert app["init"] is True
        assert app["command"][-1] == f"/state/mesh/apps/{inst.id}.json"


def test_each_container_mounts_what_it_reads_at_the_same_path_and_never_the_ca() -> None:
    """The configuration the local renderer writes is read unchanged inside (same path in and out); an
    Envoy writes only its own directory (access log); apps read their configs; no container mounts the CA."""
    doc, layout = _rendered()
    for name, service in doc["services"].items():
        mounts = {v["target"]: v for v in service.get("volumes", [])}
        assert all(m["source"] == target for target, m in mounts.items())
        assert not any(t == "/state/mesh" or t.startswith("/state/mesh/pki/ca") for t in mounts), name
        writable = sorted(t for t, m in mounts.items() if not m["read_only"])
        if name.endswith("-envoy") or name == "gateway":
            node = name.removesuffix("-envoy")
            assert writable == [f"/state/mesh/envoy/{node}"]
            leaf = "gateway" if node == "gateway" else layout.by_id(node).service
            assert f"/state/mesh/pki/leaf/{leaf}" in mounts
            assert "/state/mesh/pki/trust" in mounts
        elif name == "prometheus":
            assert writable == ["/state/mesh/prometheus"]
        elif name != "toxiproxy":
            assert list(mounts) == ["/state/mesh/apps"]
            assert writable == []


def test_addresses_are_distinct_and_on_their_networks() -> None:
    _, layout = _rendered()
    mesh = {k: v for k, v in layout.addresses.items() if not k.startswith("control:")}
    control = {k: v for k, v in layout.addresses.items() if k.startswith("control:")}
    assert len(set(mesh.values())) == len(mesh) == len(control) == len(set(control.values()))
    assert all(v.startswith("10.50.1.") for v in mesh.values())
    assert all(v.startswith("10.50.2.") for v in control.values())
    assert project.subnets(layout) == ("10.50.1.0/24", "10.50.2.0/24")
    with pytest.raises(MeshError, match="need"):
        project.addresses(layout, "10.50.1.0/29", "10.50.2.0/24")


def test_no_two_services_share_a_dict() -> None:
    """A rendered project has no aliasing (YAML would write anchors, an edit would change two services)."""
    doc, _ = _rendered()
    seen: dict[int, str] = {}

    def walk(value: object, where: str) -> None:
        if isinstance(value, dict | list):
            assert id(value) not in seen, f"{where} is {seen.get(id(value))}"
            seen[id(value)] = where
            for key, item in (value.items() if isinstance(value, dict) else enumerate(value)):
                walk(item, f"{where}.{key}")

    walk(doc, "doc")


def test_the_envoy_arguments_are_the_local_meshs() -> None:
    """Same flags as a local Envoy (one renderer, two process managers): base id, drain, concurrency."""
    doc, layout = _rendered()
    command = doc["services"]["gateway"]["command"]
    assert command[:2] == ["-c", "/state/mesh/envoy/gateway/bootstrap.json"]
    assert command[command.index("--base-id") + 1] == str(layout.gateway_base_id)
    assert command[command.index("--concurrency") + 1] == "1"


def test_the_kept_compose_file_is_deterministic_and_names_official_images() -> None:
    """compose-file writes the same text every time, with the official images behind variables."""
    first, second = compose_yaml(ENV, "environments/compose.yaml"), compose_yaml(ENV, "environments/compose.yaml")
    assert first == second
    assert "${MESH_HARNESS_ENVOY_IMAGE:-envoyproxy/envoy:v1.40.0}" in first
    assert "${MESH_HARNESS_TOXIPROXY_IMAGE:-ghcr.io/shopify/toxiproxy:2.12.0}" in first
    assert "source: ./.compose" in first
    assert "&id" not in first


def test_the_demo_image_holds_every_harness_module_the_demo_imports() -> None:
    """DEMO_FILES is whole: what the demo service and the embedded Toxiproxy server import is in the image
    (and so in its tag's digest)."""
    code = ("import sys, json, harness.mesh.local.demo_service, harness.toxiproxy.__main__\n"
            "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() "
            "if n.startswith('harness') and getattr(m, '__file__', None))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    held = {str(p) for p in images.demo_files()}
    assert [f for f in loaded if f not in held] == []


def test_the_demo_tag_follows_its_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The tag changes when a file in the image changes, not when another module does."""
    import shutil

    root = tmp_path / "harness"
    shutil.copytree(REPO / "harness", root)
    monkeypatch.setattr(images, "_harness_dir", lambda: root)
    before = images.demo_tag()
    (root / "runner" / "plan.py").write_text("# not in the image")
    assert images.demo_tag() == before
    (root / "mesh" / "local" / "demo_service.py").write_text("# changed")
    assert images.demo_tag() != before


def test_a_user_runs_every_container(tmp_path: Path) -> None:
    """Given the harness's own UID:GID, every container runs as it (what they write stays removable)."""
    layout = build_layout(ENV, 100000, ports_from=30000)
    layout.bind = "0.0.0.0"
    layout.addresses = project.addresses(layout, "10.50.1.0/24", "10.50.2.0/24")
    doc = project.render(ENV, layout, tmp_path, project.Images("e", "d", "p", "t"), tmp_path / "p.yml", "1000:1000")
    assert {s.get("user") for s in doc["services"].values()} == {"1000:1000"}


def test_health_checks_only_where_compose_waits_for_them(tmp_path: Path) -> None:
    """A project users run has them (``up --wait`` means serving); the harness's own has none (a Python
    started in every app every second is load a latency verdict sees), and waits by itself."""
    layout = build_layout(ENV, 100000, ports_from=30000)
    layout.bind = "0.0.0.0"
    layout.addresses = project.addresses(layout, "10.50.1.0/24", "10.50.2.0/24")
    imgs = project.Images("e", "d", "p", "t")
    kept = project.render(ENV, layout, tmp_path, imgs)
    managed = project.render(ENV, layout, tmp_path, imgs, healthchecks=False)
    assert all("healthcheck" in kept["services"][i.id] for i in layout.instances)
    assert kept["services"]["gateway"]["depends_on"]
    assert not any("healthcheck" in s for s in managed["services"].values())
    assert "depends_on" not in managed["services"]["gateway"]
