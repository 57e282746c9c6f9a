"""Running the embedded server (thread, foreground, command line) and choosing a real one instead."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import httpx
import pytest

from harness._errors import InputError, MeshError
from harness.install import binary_path, component
from harness.toxiproxy import EmbeddedToxiproxy, serve, toxiproxy_server_command
from harness.toxiproxy.__main__ import parse_args


def test_embedded_serves_and_stops() -> None:
    """The context manager serves the API on a free port and stops listening on exit."""
    with EmbeddedToxiproxy() as tp:
        assert tp.port != 0
        assert tp.url == f"http://127.0.0.1:{tp.port}"
        assert httpx.get(f"{tp.url}/proxies").json() == {}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{tp.url}/proxies")


def test_stop_closes_proxies_and_is_idempotent() -> None:
    """Stopping closes the proxies' listeners too; a second stop does nothing."""
    tp = EmbeddedToxiproxy().start()
    listen = httpx.post(f"{tp.url}/proxies", json={"name": "a", "upstream": "127.0.0.1:9",
                                                   "listen": "127.0.0.1:0"}).json()["listen"]
    tp.stop()
    tp.stop()
    host, _, port = listen.rpartition(":")
    with socket.socket() as sock:
        assert sock.connect_ex((host, int(port))) != 0


def test_embedded_port_in_use_is_a_mesh_error() -> None:
    """A port already taken raises MeshError in the caller's thread."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(MeshError, match=r"cannot listen on 127\.0\.0\.1"):
            EmbeddedToxiproxy(port=taken.getsockname()[1]).start()


def test_serve_port_in_use_is_a_mesh_error() -> None:
    """``serve`` fails fast with MeshError when it cannot bind (it never blocks then)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(MeshError):
            serve("127.0.0.1", taken.getsockname()[1])


def test_command_line_accepts_both_option_styles() -> None:
    """``--port`` and Go's ``-port`` both work, so toxiproxy-server command lines run unchanged."""
    assert (parse_args(["--host", "127.0.0.2", "--port", "9"]).port, parse_args(["-port", "9"]).port) == (9, 9)
    assert parse_args([]).host == "127.0.0.1"
    assert parse_args([]).port == 8474


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def no_real_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No toxiproxy-server on PATH and an empty cache."""
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MESH_HARNESS_TOXIPROXY", raising=False)
    return tmp_path


def test_command_is_none_without_a_real_server(no_real_server: Path) -> None:
    """With no real server anywhere, the embedded one is to be used."""
    assert toxiproxy_server_command() is None


def test_command_prefers_path_then_cache(no_real_server: Path) -> None:
    """A cached build is used, and a toxiproxy-server on PATH wins over it."""
    cached = _executable(binary_path(component("toxiproxy")))
    assert toxiproxy_server_command("127.0.0.1", 9000) == [str(cached), "-host", "127.0.0.1", "-port", "9000"]
    on_path = _executable(no_real_server / "bin" / "toxiproxy-server")
    assert toxiproxy_server_command() == [str(on_path), "-host", "127.0.0.1", "-port", "8474"]


def test_command_override(no_real_server: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``MESH_HARNESS_TOXIPROXY`` forces the embedded server or names a binary; a bad path is an InputError."""
    _executable(no_real_server / "bin" / "toxiproxy-server")
    monkeypatch.setenv("MESH_HARNESS_TOXIPROXY", "embedded")
    assert toxiproxy_server_command() is None
    named = _executable(no_real_server / "elsewhere" / "tp")
    monkeypatch.setenv("MESH_HARNESS_TOXIPROXY", str(named))
    assert toxiproxy_server_command() == [str(named), "-host", "127.0.0.1", "-port", "8474"]
    monkeypatch.setenv("MESH_HARNESS_TOXIPROXY", os.fspath(no_real_server / "missing"))
    with pytest.raises(InputError, match="not an executable file"):
        toxiproxy_server_command()


def test_public_names_resolve_lazily() -> None:
    """Every name in ``harness.toxiproxy.__all__`` loads, and the lazy table lists exactly those."""
    import harness.toxiproxy as package

    assert sorted(package.__all__) == sorted(package._LAZY) == package.__all__
    for name in package.__all__:
        assert getattr(package, name) is not None
