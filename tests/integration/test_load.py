"""Integration tests for harness.traffic.load: a real locust subprocess against a tiny aiohttp app.

These run real processes because the properties that matter are process-level ones: records
arrive while the load runs, the rate is what we asked for, and nothing is left running afterwards.
Durations are kept short so the whole module stays well under 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from aiohttp import web
from meshtools import gone

import harness
from harness._errors import StateCorrupt
from harness._process import Proc, boot_id, identify
from harness.traffic import LoadError, LoadGenerator, LoadSpec, kill_leftover
from harness.traffic import load as load_mod

REPO_ROOT = Path(harness.__file__).resolve().parent.parent
TRACE = "a-v1,b-v2"


# -- target app ----------------------------------------------------------------------------------


def _make_app() -> web.Application:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok", headers={"x-harness-trace": TRACE, "x-harness-version": "v1"})

    async def fail(_request: web.Request) -> web.Response:
        return web.Response(status=503, text="unavailable")

    app = web.Application()
    app.router.add_get("/", ok)
    app.router.add_get("/fail", fail)
    return app


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    """An aiohttp app on an ephemeral 127.0.0.1 port, served from a background thread."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_make_app(), access_log=None)
    ready = threading.Event()
    port: list[int] = []

    async def serve() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.append(runner.addresses[0][1])
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve())
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="test-load-target", daemon=True)
    thread.start()
    assert ready.wait(10), "aiohttp target did not start"
    yield f"127.0.0.1:{port[0]}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the main scenario ---------------------------------------------------------------------------


def test_constant_rate_incremental_records_and_clean_stop(target: str, tmp_path: Path) -> None:
    spec = LoadSpec(users=5, rate=100, duration_s=3)
    gen = LoadGenerator(spec, target, tmp_path)
    records = []
    batches = 0
    delays: list[float] = []
    t_start = time.monotonic()
    with gen:
        assert gen.running
        pid = gen.pid
        assert pid is not None
        recorded_pid, recorded_start, recorded_boot, recorded_boot_id = (tmp_path / "locust.pid").read_text().split()
        assert recorded_pid == str(pid)
        assert recorded_boot_id == (boot_id() or "-")
        record = Proc("locust", pid, float(recorded_start), "", float(recorded_boot), boot_id())
        found = identify(pid)
        assert found is not None
        assert found[1].of(record)
        startup = gen.wait_ready(15)
        while gen.running and time.monotonic() - t_start < 15:
            new = gen.read_new()
            now = time.time()
            if new:
                batches += 1
                # How long after a request completed did we get to see it?
                delays.extend(now - (r.t + r.latency_ms / 1000) for r in new)
                records.extend(new)
            time.sleep(0.05)
        summary = gen.stop()
    records.extend(gen.read_new())
    delays.sort()
    p95_delay = delays[int(len(delays) * 0.95)]
    print(
        f"\nstartup (start -> first record): {startup:.2f}s, "
        f"record delay p95 {p95_delay:.3f}s max {delays[-1]:.3f}s"
    )

    # Count and rate: 3 s at 100 rps.
    assert 240 <= len(records) <= 360, len(records)
    t0 = min(r.t for r in records)
    per_second = Counter(int(r.t - t0) for r in records)
    full_seconds = [per_second[s] for s in range(3)]
    print(f"records: {len(records)}, per second: {sorted(per_second.items())}")
    assert all(80 <= n <= 120 for n in full_seconds), full_seconds

    # Content.
    assert {r.status for r in records} == {200}
    assert {r.trace for r in records} == {TRACE}
    assert {r.version for r in records} == {"v1"}
    assert all(0 < r.latency_ms < 1000 for r in records)

    # Incremental: many batches while running, seen within ~0.5 s of the request completing
    # (flush every 0.1 s + our 0.05 s poll; p95 rather than max so a busy CI box doesn't flake).
    assert batches >= 5
    assert p95_delay < 0.5, p95_delay
    assert delays[-1] < 2.0, delays[-1]

    # Clean stop: no process left in the group, pid file removed, summary consistent.
    assert not gen.running
    assert _group_gone(pid)
    assert not (tmp_path / "locust.pid").exists()
    assert summary.complete
    assert summary.returncode == 0
    assert summary.records == len(records)
    assert abs(summary.requests - summary.records) <= max(1, summary.records // 100)
    assert summary.failures == 0
    assert summary.rps is not None
    assert 80 <= summary.rps <= 120
    assert gen.malformed == 0
    assert gen.stop() is summary  # idempotent


def test_5xx_are_recorded_not_dropped(target: str, tmp_path: Path) -> None:
    with LoadGenerator(LoadSpec(users=2, rate=40, duration_s=1, path="/fail"), target, tmp_path) as gen:
        gen.wait_ready(15)
        while gen.running:
            time.sleep(0.05)
        summary = gen.stop()
        records = gen.read_new()
    assert len(records) >= 20
    assert {r.status for r in records} == {503}
    assert {r.trace for r in records} == {""}
    # Locust counts them as failures in its summary, but every one of them is recorded.
    assert summary.requests == summary.records == len(records)
    assert summary.failures == summary.requests


def test_connection_refused_is_status_0(tmp_path: Path) -> None:
    # Bound but never listening: connections are refused, and no concurrent process can take the port.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        with LoadGenerator(LoadSpec(users=1, rate=20, duration_s=1), f"127.0.0.1:{port}", tmp_path) as gen:
            gen.wait_ready(15)
            records = gen.read_new()
            summary = gen.stop()
            records += gen.read_new()
    assert records
    assert {r.status for r in records} == {0}
    assert summary.failures == summary.requests == len(records)


# -- safety --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "match"),
    [
        ("10.0.0.1:80", "only target 127.0.0.1"),
        ("example.com:80", "only target 127.0.0.1"),
        ("http://example.com:8080", "only target 127.0.0.1"),
        ("0.0.0.0:8080", "only target 127.0.0.1"),
        ("[::1]:8080", "only target 127.0.0.1"),
        ("127.0.0.2:8080", "only target 127.0.0.1"),
        ("127.0.0.1.nip.io:8080", "only target 127.0.0.1"),
        ("http://user:pw@127.0.0.1:8080", "credentials"),
        ("http://127.0.0.1:8080/path", "path or query"),
        ("ftp://127.0.0.1:21", "only http/https"),
        ("127.0.0.1", "explicit port"),
        ("127.0.0.1:99999", "invalid port"),
        ("", "non-empty"),
    ],
)
def test_refuses_anything_but_local_ip(host: str, match: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        LoadGenerator(LoadSpec(users=1, rate=1, duration_s=1), host, tmp_path)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("localhost:8080", "http://127.0.0.1:8080"),
        ("http://LOCALHOST:8080/", "http://127.0.0.1:8080"),
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
    ],
)
def test_accepts_local_targets_pinned_to_ipv4(host: str, expected: str, tmp_path: Path) -> None:
    gen = LoadGenerator(LoadSpec(users=1, rate=1, duration_s=1), host, tmp_path)
    assert gen.target == expected
    assert expected in gen.command()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"users": 0}, "users"),
        ({"users": True}, "users"),
        ({"users": 10_000}, "users"),
        ({"rate": 0}, "rate"),
        ({"rate": float("inf")}, "rate"),
        ({"duration_s": 0}, "duration_s"),
        ({"duration_s": 7200}, "duration_s"),
        ({"path": "nope"}, "path"),
        ({"path": "/a b"}, "path"),
        ({"headers": {"x-bad\n": "1"}}, "header name"),
        ({"headers": {"x-ok": "a\r\nInjected: 1"}}, "value for header"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"workers": -1}, "workers"),
        ({"workers": 64}, "workers"),
        ({"users": 2, "workers": 3}, "whole users"),
        ({"users": 4, "workers": 2, "remote_workers": 3, "master_port": 6000}, "whole users"),
        ({"remote_workers": 1}, "master_port fixed in advance"),
        ({"master_port": 80}, "master_port"),
    ],
)
def test_spec_validation(kwargs: dict[str, object], match: str) -> None:
    base: dict[str, object] = {"users": 1, "rate": 1.0, "duration_s": 1.0}
    with pytest.raises(ValueError, match=match):
        LoadSpec(**(base | kwargs))  # type: ignore[arg-type]


def test_spec_headers_are_frozen() -> None:
    headers = {"x-a": "1"}
    spec = LoadSpec(users=1, rate=1, duration_s=1, headers=headers)
    headers["x-a"] = "2"
    assert spec.headers["x-a"] == "1"
    with pytest.raises(TypeError):
        spec.headers["x-a"] = "3"  # type: ignore[index]


def test_command_line(tmp_path: Path) -> None:
    gen = LoadGenerator(LoadSpec(users=5, rate=100, duration_s=2.5), "127.0.0.1:9", tmp_path)
    cmd = gen.command()
    assert cmd[:3] == [sys.executable, "-m", "locust"]
    assert cmd[cmd.index("-f") + 1] == str(load_mod.LOCUSTFILE)
    assert load_mod.LOCUSTFILE.is_file()
    assert cmd[cmd.index("--run-time") + 1] == "3s"
    assert {"--headless", "--json", "--only-summary"} <= set(cmd)


def test_harness_never_imports_locust() -> None:
    """Importing locust monkey-patches the process; the harness side must stay locust-free."""
    code = "import sys, harness.traffic; bad = {'locust', 'gevent'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=30)


# -- failure and crash handling ------------------------------------------------------------------


def test_startup_failure_raises_with_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    broken = tmp_path / "broken_locustfile.py"
    broken.write_text("raise RuntimeError('deliberately broken locustfile')\n")
    monkeypatch.setattr(load_mod, "LOCUSTFILE", broken)
    gen = LoadGenerator(LoadSpec(users=1, rate=1, duration_s=5), target, tmp_path / "wd")
    gen.start()
    pid = gen.pid
    assert pid is not None
    with pytest.raises(LoadError, match="deliberately broken locustfile") as info:
        gen.wait_ready(15)
    assert "Traceback" not in str(info.value)
    assert len(str(info.value)) < 1200
    assert not gen.running
    assert _group_gone(pid)


def test_kill_leftover_after_crash(target: str, tmp_path: Path) -> None:
    """A 'crashed' harness: the generator is never stopped; cleanup finds it via locust.pid."""
    gen = LoadGenerator(LoadSpec(users=1, rate=10, duration_s=60), target, tmp_path)
    gen.start()
    try:
        gen.wait_ready(15)
        pid = gen.pid
        assert pid is not None
        assert kill_leftover(tmp_path) is True
        assert not gen.running  # dead (a zombie until we reap it below)
        assert kill_leftover(tmp_path) is False  # idempotent
        assert not (tmp_path / "locust.pid").exists()
    finally:
        summary = gen.stop()
    assert _group_gone(pid)
    assert not summary.complete  # SIGKILLed: no locust summary
    assert summary.returncode == -signal.SIGKILL
    assert summary.records > 0


def test_kill_leftover_ignores_stale_or_foreign_pid(tmp_path: Path) -> None:
    assert kill_leftover(tmp_path) is False  # no file
    (tmp_path / "locust.pid").write_text(f"{os.getpid()}\n")  # alive, but not locust
    assert kill_leftover(tmp_path) is False
    assert not (tmp_path / "locust.pid").exists()
    (tmp_path / "locust.pid").write_text("garbage\n")  # damaged: reported, never guessed at
    with pytest.raises(StateCorrupt, match=r"locust\.pid"):
        kill_leftover(tmp_path)


def test_locust_stops_itself_when_harness_dies(target: str, tmp_path: Path) -> None:
    """The locustfile's parent watchdog: a harness killed outright must not leave load running."""
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from harness.traffic import LoadGenerator, LoadSpec
        gen = LoadGenerator(LoadSpec(users=1, rate=10, duration_s=60), {target!r}, Path({str(tmp_path)!r}))
        gen.start()
        gen.wait_ready(15)
        print(gen.pid, flush=True)
        os._exit(1)
        """
    )
    assert _orphaned_load_stops(script, tmp_path, within_s=5), "locust kept running after its harness died"
    # Graceful path: the summary was still written.
    assert '"num_requests"' in (tmp_path / "locust-summary.json").read_text()


def test_read_new_holds_back_partial_lines(target: str, tmp_path: Path) -> None:
    gen = LoadGenerator(LoadSpec(users=1, rate=1, duration_s=1), target, tmp_path)
    # Exercise the tailer without a locust process: open the reader the way start() does.
    gen.records_path.write_bytes(b"")
    gen._reader = gen.records_path.open("rb", buffering=0)
    try:
        with gen.records_path.open("ab", buffering=0) as w:
            w.write(b"1.5\t2.25\t200\tv1\ta-v1\n1.6\t3.0\t5")
            assert gen.read_new() == [(1.5, 2.25, 200, "v1", "a-v1")]
            w.write(b"03\t\t\nnot\ta record\n")
            assert gen.read_new() == [(1.6, 3.0, 503, "", "")]
            assert gen.malformed == 1
            assert gen.read_new() == []
    finally:
        gen._reader.close()


# -- informative: how fast can it go? ------------------------------------------------------------


@pytest.mark.slow
def test_max_rate_informative(tmp_path: Path) -> None:
    """Not a benchmark gate; prints achieved rate and locust CPU for the report."""
    server_code = textwrap.dedent(
        """
        import sys
        from aiohttp import web
        async def ok(_r):
            return web.Response(text="ok", headers={"x-harness-trace": "a-v1,b-v2"})
        app = web.Application()
        app.router.add_get("/", ok)
        web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
        """
    )
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", server_code, str(port)])
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        spec = LoadSpec(users=20, rate=3000, duration_s=3)
        with LoadGenerator(spec, f"127.0.0.1:{port}", tmp_path) as gen:
            startup = gen.wait_ready(15)
            pid = gen.pid
            assert pid is not None
            tick = os.sysconf("SC_CLK_TCK")
            cpu_s = 0.0
            t_first = time.monotonic()
            while gen.running:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    cpu_s = (int(fields[11]) + int(fields[12])) / tick
                except (FileNotFoundError, IndexError):
                    break
                time.sleep(0.1)
            wall = time.monotonic() - t_first
            summary = gen.stop()
    finally:
        server.terminate()
        server.wait(10)
    print(
        f"\nmax-rate: asked 3000 rps/20 users; locust summary rps={summary.rps}, "
        f"records={summary.records}, requests={summary.requests}, "
        f"locust CPU {cpu_s:.2f}s over ~{wall + startup:.1f}s wall (startup {startup:.2f}s)"
    )
    assert summary.records > 0


# -- Locust's own distributed mode ------------------------------------------------------------------


def test_workers_share_the_rate_and_every_record_arrives(target: str, tmp_path: Path) -> None:
    """``workers: 2``: a master and two forked workers (Locust's --processes), the rate split between them,
    every worker's records in the one stream (whole lines: O_APPEND writes never interleave), the master's
    summary counting them all, and nothing left when it stops."""
    gen = LoadGenerator(LoadSpec(users=4, rate=150, duration_s=3, workers=2), target, tmp_path)
    records = []
    with gen:
        gen.wait_ready(30)
        pid = gen.pid
        assert pid is not None
        workers = psutil.Process(pid).children()
        assert len(workers) == 2
        assert all(os.getpgid(w.pid) == pid for w in workers)  # one group: one killpg stops them all
        while gen.running:
            records.extend(gen.read_new())
            time.sleep(0.05)
        summary = gen.stop()
    records.extend(gen.read_new())
    assert gen.malformed == 0
    assert 360 <= len(records) <= 540, len(records)  # 3 s at 150 rps
    t0 = min(r.t for r in records)
    per_second = Counter(int(r.t - t0) for r in records)
    assert all(120 <= per_second[s] <= 180 for s in range(1, 3)), per_second
    assert {r.status for r in records} == {200}
    assert summary.complete
    assert abs(summary.requests - len(records)) <= max(1, len(records) // 100)
    assert _group_gone(pid)
    assert all(not psutil.pid_exists(w.pid) or psutil.Process(w.pid).status() == psutil.STATUS_ZOMBIE
               for w in workers)


def test_workers_stop_when_the_harness_dies(target: str, tmp_path: Path) -> None:
    """The watchdog in each process: a harness killed outright takes the master down, and the master
    its workers; kill_leftover finds the whole group otherwise."""
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from harness.traffic import LoadGenerator, LoadSpec
        gen = LoadGenerator(LoadSpec(users=2, rate=20, duration_s=60, workers=2), {target!r},
                            Path({str(tmp_path)!r}))
        gen.start()
        gen.wait_ready(30)
        print(gen.pid, flush=True)
        os._exit(1)
        """
    )
    assert _orphaned_load_stops(script, tmp_path, within_s=10), \
        "locust's master or workers kept running after the harness died"


def _orphaned_load_stops(script: str, workdir: Path, within_s: float) -> bool:
    """Run ``script`` (a harness that starts a load, prints its PID and dies); did the load's whole
    process group end by itself within ``within_s``? (Killed afterwards either way.)"""
    out = subprocess.run([sys.executable, "-c", script], check=False, cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1, out.stderr[-2000:]
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + within_s
    while not _group_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    gone = _group_gone(pid)
    if not gone:
        kill_leftover(workdir)
    return gone


def test_a_remote_worker_is_awaited_and_its_records_come_back(target: str, tmp_path: Path) -> None:
    """``remote_workers: 1``: the master waits for a worker it did not start (a separate process run from
    the generator's own script, on this machine: the tunnel a second machine needs is not exercised), and
    that worker's records, which it does not write (its record file is /dev/null), arrive through Locust's
    message channel: together with the local worker's, the whole rate is in the records."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gen = LoadGenerator(LoadSpec(users=4, rate=100, duration_s=4, workers=1, remote_workers=1, master_port=port),
                        target, tmp_path / "harness")
    script = gen.remote_worker_script()
    assert f"--master-port {port}" in script
    assert "HARNESS_REMOTE=1" in script
    records = []
    with gen:
        time.sleep(1.5)
        assert not gen.read_new()  # nobody sends until every worker is there
        remote = subprocess.Popen(["sh", "-c", script], cwd=tmp_path, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            gen.wait_ready(60)
            while gen.running:
                records.extend(gen.read_new())
                time.sleep(0.05)
            summary = gen.stop()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(remote.pid, signal.SIGKILL)
            remote.wait(timeout=10)
    records.extend(gen.read_new())
    assert gen.malformed == 0
    assert 320 <= len(records) <= 480, len(records)  # 4 s at 100 rps: both workers' halves
    assert abs(summary.requests - len(records)) <= max(2, len(records) // 50)


# -- a spare Locust, imported ahead (prewarm) ------------------------------------------------------




def _wait_for_import(timeout: float = 20.0) -> psutil.Process:
    """The spare's process, once its ``import locust.main`` is done (it then blocks reading stdin)."""
    spare = load_mod._spares._proc
    assert spare is not None
    proc = psutil.Process(spare.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.status() == psutil.STATUS_SLEEPING and proc.cpu_times().user > 0.2:
            return proc
        time.sleep(0.05)
    raise AssertionError("the spare never finished importing locust")


def test_a_prewarmed_locust_takes_the_next_run(target: str, tmp_path: Path) -> None:
    load_mod.prewarm()
    load_mod.prewarm()  # idempotent: still one spare
    spare = _wait_for_import()
    gen = LoadGenerator(LoadSpec(users=2, rate=50, duration_s=2), target, tmp_path)
    with gen:
        assert gen.warm_start
        assert gen.pid == spare.pid
        recorded_pid, recorded_start, _, _ = (tmp_path / "locust.pid").read_text().split()
        assert (int(recorded_pid), float(recorded_start)) == (spare.pid, spare.create_time())
        startup = gen.wait_ready(15)
        time.sleep(1.0)
        summary = gen.stop()
    records = gen.read_new()
    print(f"\nwarm startup (hand-over -> first record): {startup:.3f}s")
    # The run is the one asked for, in the run's own directory and environment.
    assert summary.complete
    assert summary.returncode == 0
    assert summary.records >= 40
    assert {r.trace for r in records} <= {TRACE}
    assert (tmp_path / "locust-summary.json").read_text().strip()
    assert _group_gone(spare.pid)
    assert load_mod._spares._proc is None  # taken, not kept


def test_without_a_spare_the_start_is_cold(target: str, tmp_path: Path) -> None:
    load_mod.drop_prewarmed()
    gen = LoadGenerator(LoadSpec(users=1, rate=20, duration_s=1), target, tmp_path)
    with gen:
        gen.wait_ready(15)
        assert not gen.warm_start


def test_a_dead_spare_is_passed_over(target: str, tmp_path: Path) -> None:
    load_mod.prewarm()
    spare = load_mod._spares._proc
    assert spare is not None
    os.killpg(spare.pid, signal.SIGKILL)
    spare.wait(10)
    gen = LoadGenerator(LoadSpec(users=1, rate=20, duration_s=1), target, tmp_path)
    with gen:
        gen.wait_ready(15)
        assert not gen.warm_start
        assert gen.pid != spare.pid


def test_an_untaken_spare_is_ended_and_ends_itself(tmp_path: Path) -> None:
    load_mod.prewarm()
    proc = _wait_for_import()
    load_mod.drop_prewarmed()
    assert _group_gone(proc.pid)
    # Without drop (the harness killed): its stdin closes, and it exits on its own without loading.
    code = ("import time, harness.traffic.load as m; m.prewarm(); print(m._spares._proc.pid, flush=True); "
            "time.sleep(30)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=REPO_ROOT)
    assert parent.stdout is not None
    spare_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait(10)
    assert gone(spare_pid, timeout=20)
