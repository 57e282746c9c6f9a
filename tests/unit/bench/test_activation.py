"""Activation as traffic sees it, against a real local HTTP server whose answer a fake mesh flips: the
figure is the time until the probe sees the flip, and a fault is undone even when it is never seen."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
if importlib.util.find_spec("bench") is None:  # `pytest` run from elsewhere than the repository root
    sys.path.insert(0, str(REPO))

activation = importlib.import_module("bench.activation")


class Flip:
    status = 200


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(Flip.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[str]:
    Flip.status = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class FakeMesh:
    """Applying flips the gateway's answer to 503 after ``delay_s``; undoing flips it back at once."""

    def __init__(self, url: str, delay_s: float, takes: bool = True) -> None:
        self.gateway_url = url
        self.delay_s = delay_s
        self.takes = takes
        self.undone = 0

    def prepare(self, intent: Any) -> Any:
        return SimpleNamespace(undo={"intent": intent})

    def apply(self, prepared: Any) -> None:
        if self.takes:
            threading.Timer(self.delay_s, lambda: setattr(Flip, "status", 503)).start()

    def undo(self, undo: Any) -> None:
        self.undone += 1
        Flip.status = 200


def test_activation_is_when_traffic_shows_the_fault(gateway: str) -> None:
    mesh = FakeMesh(gateway, delay_s=0.05)
    on, off = activation.fault_activation_ms(mesh, "entry", 3)
    assert len(on) == len(off) == 3
    assert all(50 <= ms < 500 for ms in on)  # never before the flip; soon after it
    assert all(ms < 200 for ms in off)
    assert mesh.undone == 3


def test_a_fault_never_seen_is_still_undone(gateway: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(activation, "SEEN_TIMEOUT_S", 0.3)
    mesh = FakeMesh(gateway, delay_s=0.0, takes=False)
    t0 = time.perf_counter()
    with pytest.raises(TimeoutError):
        activation.fault_activation_ms(mesh, "entry", 2)
    assert mesh.undone == 1  # the first change's, before the error surfaced
    assert time.perf_counter() - t0 < 5
