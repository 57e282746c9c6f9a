"""The harness's own locustfile: constant-rate GETs, every response recorded to a TSV stream.

This file is executed *only* inside the locust subprocess started by
:class:`harness.traffic.load.LoadGenerator`. It must never be imported by the harness itself,
because importing locust gevent-monkey-patches the whole interpreter (threads, sockets, time),
which would silently change the behaviour of the runner, the fault injectors and the metrics
scrapers. For the same reason this file imports nothing from ``harness``: it is loaded by path and
is configured entirely through environment variables (see ``ENV_*`` below, mirrored in ``load.py``).

Why a record stream instead of locust's own statistics: an experiment judges the baseline, fault
and recovery phases separately, so the runner needs per-request timestamps it can cut into time
windows while the test is still running. Locust's aggregated stats can't be windowed after the
fact, and its ``--csv-full-history`` is per-second aggregates only. One short TSV line per request
is the cheapest format that keeps all the information (no JSON encoding in the hot path).

Record format, one line per request, tab-separated, ``\\n``-terminated::

    t_start_epoch_s  latency_ms  status  version  trace

``status`` is 0 when no HTTP response was received (connection refused/reset, timeout...).

With ``load.workers`` Locust runs in its own distributed mode (``--processes N``): this module is
imported once, then Locust forks the workers, which share the record file's descriptor. Each flush is
one ``write(2)`` on a descriptor opened with ``O_APPEND``, which the kernel appends whole, so lines of
different workers never interleave. (Sending records to the master over Locust's message channel
instead was measured once: the master, a third process on two cores, then capped two workers at 1.4x
one process's rate, against about 2x with each worker writing its own lines.)

Workers on other machines (``load.remote_workers``) cannot write this machine's file: they run with
``HARNESS_REMOTE=1`` and send their records to the master over Locust's message channel, and the master
appends them. The master also waits for them: it counts them into ``expect_workers`` at ``init``, which
Locust fires before its headless master starts waiting.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import time
from typing import Any

import gevent
from locust import FastHttpUser, constant_throughput, events, task
from locust.runners import MasterRunner, WorkerRunner

__all__ = ["HarnessUser"]

# Environment contract with harness/traffic/load.py (keep the two in sync).
ENV_RATE = "HARNESS_RATE"
ENV_USERS = "HARNESS_USERS"
ENV_PATH = "HARNESS_PATH"
ENV_HEADERS = "HARNESS_HEADERS"
ENV_RECORDS = "HARNESS_RECORDS"
ENV_TIMEOUT = "HARNESS_TIMEOUT"
ENV_PARENT_PID = "HARNESS_PARENT_PID"
ENV_WORKERS = "HARNESS_WORKERS"
ENV_REMOTE_WORKERS = "HARNESS_REMOTE_WORKERS"
ENV_REMOTE = "HARNESS_REMOTE"
RECORDS_MESSAGE = "harness_records"

TRACE_HEADER = "x-harness-trace"
VERSION_HEADER = "x-harness-version"

# Flushing every 100 ms keeps the reader at most ~0.1 s (+ its poll interval) behind reality while
# costing ~10 small writes per second regardless of the request rate.
FLUSH_INTERVAL_S = 0.1


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


RATE = _env_float(ENV_RATE, 1.0)
USERS = max(1, int(_env_float(ENV_USERS, 1.0)))
PATH = os.environ.get(ENV_PATH) or "/"
HEADERS: dict[str, str] = {str(k): str(v) for k, v in json.loads(os.environ.get(ENV_HEADERS) or "{}").items()}
TIMEOUT_S = _env_float(ENV_TIMEOUT, 30.0)
_PARENT_PID = int(os.environ.get(ENV_PARENT_PID) or 0)
LOCAL_WORKERS = int(_env_float(ENV_WORKERS, 0.0))
REMOTE_WORKERS = int(_env_float(ENV_REMOTE_WORKERS, 0.0))
WORKERS = LOCAL_WORKERS + REMOTE_WORKERS
_REMOTE = os.environ.get(ENV_REMOTE) == "1"

_records_path = os.environ.get(ENV_RECORDS)
if not _records_path:
    # Fail at import (locust prints this to stderr, which the harness surfaces in LoadError):
    # running without a record stream would produce load nobody can evaluate.
    raise RuntimeError(f"{ENV_RECORDS} is not set; this locustfile is meant to be run by harness.traffic")

# We batch lines ourselves and write each batch with one write(2) on an O_APPEND descriptor (see above).
_fd = os.open(_records_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
_buf: list[str] = []
_to_master: list[Any] = []
"""A remote worker's runner, once known (``init``): its records go to the master, not to a file."""
_user_index = itertools.count()


def _write(data: bytes) -> None:
    while data:  # a regular file takes it whole; the loop only guards against a short write
        data = data[os.write(_fd, data):]


def _flush() -> None:
    """Write out (a remote worker: send to the master) the buffered records. Never yields between join
    and clear, so no lock is needed."""
    if _buf:
        lines = "".join(_buf)
        _buf.clear()
        if _to_master:
            _to_master[0].send_message(RECORDS_MESSAGE, {"lines": lines})
        else:
            _write(lines.encode("utf-8"))


def _from_remote(environment: Any, msg: Any, **_kwargs: Any) -> None:
    """The master's handler (Locust passes these names): a remote worker's records, appended as they come."""
    _write(str((msg.data or {}).get("lines", "")).encode("utf-8"))


def _parent_gone(parent: int) -> bool:
    """True once ``parent``, which started us, has died (we were re-parented). The parent is the harness
    for the one process (or the master), the master for a forked worker."""
    return _PARENT_PID > 0 and (os.getppid() != parent or parent == 1)


def _flusher(parent: int) -> None:
    """Periodic flush, plus a watchdog: if the harness crashed, stop instead of loading the mesh
    until --run-time expires. SIGTERM goes through locust's normal shutdown (flush + summary)."""
    while True:
        gevent.sleep(FLUSH_INTERVAL_S)
        _flush()
        if _parent_gone(parent):
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _clean(value: str | list[str] | None) -> str:
    """Header value as a single TSV-safe field (repeated headers joined the HTTP way, with ', ')."""
    if value is None:
        return ""
    if isinstance(value, list):
        value = ", ".join(value)
    if "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\t", " ").replace("\n", " ").replace("\r", " ")
    return value


def _on_init(environment: Any, **_kwargs: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(RECORDS_MESSAGE, _from_remote)
        if REMOTE_WORKERS and environment.parsed_options is not None:
            environment.parsed_options.expect_workers = LOCAL_WORKERS + REMOTE_WORKERS
    elif isinstance(runner, WorkerRunner) and _REMOTE:
        _to_master.append(runner)
    # gevent's loop caches "now" and has not iterated since it was created during locust's ~0.5 s
    # of imports, so the --run-time timer (armed right after this event) would fire that much
    # early: measured 2.45 s of load for --run-time 3s. Refreshing the cached time fixes it.
    gevent.get_hub().loop.update_now()
    gevent.spawn(_flusher, os.getppid())  # init fires after Locust forked its workers: each its own parent


def _on_test_stop(environment: Any, **_kwargs: Any) -> None:
    _flush()


def _on_quitting(environment: Any, **_kwargs: Any) -> None:
    _flush()


# Registered with calls rather than decorators so the listeners themselves stay typed for mypy
# (locust's EventHook.add_listener is untyped; a decorator would erase the listeners' signatures).
events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(_on_test_stop)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_on_quitting)  # type: ignore[no-untyped-call]


class HarnessUser(FastHttpUser):
    """One of ``USERS`` identical users that together send ``RATE`` requests per second.

    ``constant_throughput`` (not ``constant``/``between``) is used so the offered load stays at the
    configured rate regardless of latency, as long as latency stays below ``USERS / RATE`` seconds;
    beyond that each user becomes closed-loop and the rate drops, which the records make visible.
    """

    wait_time = constant_throughput(RATE / USERS)
    network_timeout = TIMEOUT_S
    connection_timeout = TIMEOUT_S
    # Retries would hide exactly the failures a chaos experiment is looking for.
    max_retries = 0

    def on_start(self) -> None:
        # Locust spawns users in one batch, so without staggering all users fire in lockstep:
        # bursts of USERS requests every USERS/RATE s. Offsetting user i by i/RATE spreads the
        # requests evenly, so a short fault window sees the configured rate, not a burst-or-nothing.
        # Workers number their users from 0 each, so there user i takes slot i*WORKERS plus a random
        # share of the WORKERS slots after it: workers interleave instead of firing together.
        index = next(_user_index)
        slot = index if WORKERS <= 1 else index * WORKERS + random.random() * WORKERS
        gevent.sleep((slot % USERS) / RATE)

    @task
    def get(self) -> None:
        t_start = time.time()
        p_start = time.perf_counter()
        # allow_redirects=False: record what the mesh answered, not where a redirect led.
        with self.client.get(
            PATH, headers=HEADERS, name=PATH, catch_response=True, allow_redirects=False
        ) as resp:
            latency_ms = (time.perf_counter() - p_start) * 1000.0
            status = int(resp.status_code or 0)
            headers = resp.headers
            if headers is None:
                version = trace = ""
            else:
                version = _clean(headers.get(VERSION_HEADER))
                trace = _clean(headers.get(TRACE_HEADER))
            # Failures only feed locust's summary counter (they never stop the run); 5xx and
            # network errors count, 4xx don't, since a 403/429 is often the policy under test.
            if status == 0:
                resp.failure(type(resp.error).__name__ if resp.error is not None else "no response")
            elif status >= 500:
                resp.failure(f"HTTP {status}")
            else:
                resp.success()
        _buf.append(f"{t_start:.6f}\t{latency_ms:.3f}\t{status}\t{version}\t{trace}\n")
