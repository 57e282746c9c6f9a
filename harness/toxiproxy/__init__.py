"""An embedded server that speaks Toxiproxy's HTTP API, for meshes where no Toxiproxy can be installed.

The local mesh interposes it on an edge to inject TCP faults (latency, bandwidth, resets, timeouts,
truncation, slicing), driven only through the ``toxiproxy-python`` client, so the same code drives a
real Toxiproxy (compose runs one). It follows Toxiproxy 2.12.0's API and toxic semantics and is tested
side by side with the real server built by ``harness.install``; see docs/concepts/toxiproxy.md.

Run it with :func:`serve` (``python -m harness.toxiproxy``) or in-process with
:class:`EmbeddedToxiproxy`; :func:`toxiproxy_server_command` says whether a real server is available.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.toxiproxy._api import API_VERSION
    from harness.toxiproxy._command import toxiproxy_server_command
    from harness.toxiproxy._runner import DEFAULT_PORT, EmbeddedToxiproxy, serve

# Lazy (PEP 562): choosing a server (``toxiproxy_server_command``) must not pay for importing aiohttp.
_LAZY = {
    "API_VERSION": "harness.toxiproxy._api",
    "DEFAULT_PORT": "harness.toxiproxy._runner",
    "EmbeddedToxiproxy": "harness.toxiproxy._runner",
    "serve": "harness.toxiproxy._runner",
    "toxiproxy_server_command": "harness.toxiproxy._command",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'harness.toxiproxy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["API_VERSION", "DEFAULT_PORT", "EmbeddedToxiproxy", "serve", "toxiproxy_server_command"]
