"""One client per scrape target: the same one for every request to a host and port, another for another."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from harness.metrics.targets import TargetClients


def test_one_client_per_host_and_port_even_from_many_threads() -> None:
    clients = TargetClients()
    urls = [f"http://127.0.0.1:{9000 + i % 5}/stats?x={i}" for i in range(200)]
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(clients.client, urls))
    assert len({id(c) for c in made}) == 5
    assert clients.client("http://127.0.0.1:9001/other") is clients.client("http://127.0.0.1:9001/")
    assert clients.client("http://localhost:9001/") is not clients.client("http://127.0.0.1:9001/")
    kept = made[0]
    clients.close()
    assert kept.is_closed
    assert clients.client(urls[0]) is not kept  # usable again after close: a fresh client
    clients.close()
