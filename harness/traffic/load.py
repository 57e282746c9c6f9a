"""Constant-rate HTTP load against the local mesh, with a per-request record stream.

Locust is run as a *subprocess* with the harness's own locustfile (``locustfile.py`` next to this
module) and is never imported here: importing locust gevent-monkey-patches the whole interpreter,
which would change how the runner's threads, sockets and timers behave. Keep it that way - this
module must not import locust or gevent, directly or indirectly.

The subprocess appends one TSV line per request to ``<workdir>/records.tsv`` (flushed every
~100 ms). :meth:`LoadGenerator.read_new` tails that file incrementally, so the experiment runner can
cut the records into baseline/fault/recovery windows while the load is still running.

Safety rules, enforced here rather than left to callers:

* the only target is 127.0.0.1 (``localhost`` is accepted and pinned to 127.0.0.1); anything else
  raises :class:`ValueError` - this harness must never be able to load-test somebody else's host;
* users, rate, duration and timeouts are capped, and locust gets ``--run-time`` so it ends on its
  own even if nobody calls :meth:`LoadGenerator.stop`;
* locust runs in its own process group whose leader PID and start (time, boot time and boot id) are
  written to ``<workdir>/locust.pid``, so :func:`kill_leftover` can clean up after a harness that
  crashed (and never kill a recycled PID), and the locustfile additionally stops itself when its
  parent (the harness) disappears.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import IO, NamedTuple, Self
from urllib.parse import urlsplit

import psutil

from harness._errors import HarnessError, StateCorrupt
from harness._process import BOOT_ID_PATTERN, Proc, identify, start_of

__all__ = [
    "LOCUSTFILE",
    "MAX_DURATION_S",
    "MAX_RATE",
    "MAX_USERS",
    "MAX_WORKERS",
    "REMOTE_WAIT_S",
    "LoadError",
    "LoadGenerator",
    "LoadSpec",
    "LoadSummary",
    "Record",
    "drop_prewarmed",
    "kill_leftover",
    "prewarm",
]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")

# Hard caps. They bound what a typo in a suite file can do to this machine (and to the records file,
# which grows by ~50 bytes per request): 20k rps * 3600 s is already ~3.6 GB.
MAX_USERS = 1000
MAX_WORKERS = 32
LOCAL_WAIT_S = 30
"""How long the master waits for its workers to connect before it gives up (and exits)."""
REMOTE_WAIT_S = 300
"""How long it waits when remote workers are expected: someone has to start them."""
MAX_RATE = 20_000.0
MAX_DURATION_S = 3600.0
MAX_TIMEOUT_S = 300.0

PID_FILE = "locust.pid"
RECORDS_FILE = "records.tsv"
STDOUT_FILE = "locust-summary.json"
STDERR_FILE = "locust-stderr.log"

# Environment contract with locustfile.py (keep the two in sync).
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

_ALLOWED_HOSTS = frozenset({"127.0.0.1", "localhost"})
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
_POLL_S = 0.02
_KILL_WAIT_S = 5.0


class LoadError(HarnessError):
    """The locust subprocess failed to start, produce records, or stop (exit 3: the load could not be sent).

    The message carries the last few meaningful lines of locust's stderr (tracebacks and stats
    tables stripped), because that is almost always where the actual reason is.
    """

    exit_code = 3


@dataclass(frozen=True)
class LoadSpec:
    """What load to offer: ``rate`` GET requests per second in total, spread over ``users``.

    More users only matter when latency approaches ``users / rate`` seconds: each locust user is
    closed-loop, so a user whose request takes longer than its interval falls behind and the
    offered rate drops (visible in the records, not hidden).
    """

    users: int
    rate: float
    duration_s: float
    path: str = "/"
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    timeout_s: float = 30.0
    workers: int = 0
    """Locust's own distributed mode on this machine (``--processes N``): a master and ``workers`` worker
    processes it forks, for a rate one process cannot reach. 0: one process."""
    remote_workers: int = 0
    """Workers started elsewhere that the master waits for (at most :data:`REMOTE_WAIT_S`) on
    ``127.0.0.1:master_port``, reached through a tunnel or from the same pod; see
    :meth:`LoadGenerator.remote_worker_script`. Their records come back over Locust's message channel."""
    master_port: int = 0
    """The master's port; 0 picks a free one (remote workers need one fixed in advance)."""

    def __post_init__(self) -> None:
        users = self.users
        if isinstance(users, bool) or not isinstance(users, int) or not 1 <= users <= MAX_USERS:
            raise ValueError(f"users must be an int in [1, {MAX_USERS}], got {self.users!r}")
        _check_number("rate", self.rate, MAX_RATE)
        workers = self.workers
        if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= MAX_WORKERS:
            raise ValueError(f"workers must be an int in [0, {MAX_WORKERS}], got {self.workers!r}")
        remote = self.remote_workers
        if isinstance(remote, bool) or not isinstance(remote, int) or not 0 <= remote <= MAX_WORKERS:
            raise ValueError(f"remote_workers must be an int in [0, {MAX_WORKERS}], got {self.remote_workers!r}")
        port = self.master_port
        if isinstance(port, bool) or not isinstance(port, int) or not (port == 0 or 1024 <= port <= 65535):
            raise ValueError(f"master_port must be 0 or a port in [1024, 65535], got {self.master_port!r}")
        if remote and not port:
            raise ValueError("remote workers need a master_port fixed in advance, to reach the master at")
        if workers + remote > users:
            raise ValueError(f"{users} users cannot keep {workers + remote} workers busy: Locust gives each worker "
                             "whole users")
        _check_number("duration_s", self.duration_s, MAX_DURATION_S)
        _check_number("timeout_s", self.timeout_s, MAX_TIMEOUT_S)
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ValueError(f"path must start with '/', got {self.path!r}")
        if any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in self.path):
            raise ValueError(f"path must not contain whitespace or control characters: {self.path!r}")
        headers: dict[str, str] = {}
        for name, value in dict(self.headers).items():
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"invalid header name {name!r}")
            if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
                raise ValueError(f"invalid value for header {name!r}: {value!r}")
            headers[name] = value
        # Frozen means frozen: callers must not be able to change headers of a running spec.
        object.__setattr__(self, "headers", MappingProxyType(headers))

    @property
    def distributed(self) -> bool:
        """A master and workers rather than one process."""
        return bool(self.workers or self.remote_workers)


# A spare Locust: the interpreter and ``import locust.main`` (gevent, Flask, the clients: ~0.6 s of CPU
# on a 2-core machine, most of a generator's start-up) done ahead, before the experiment that needs it.
# It waits for one line on stdin: the JSON of the run it is to be (argv, environment, working directory,
# output files). An empty read (the harness exited or dropped it) ends it, so it can never outlive the
# harness or load anything by itself.
_SPARE_MAIN = """\
import json, os, sys, traceback
try:
    import locust.main
except BaseException:
    failed = traceback.format_exc()
else:
    failed = None
line = sys.stdin.readline()
if not line:
    raise SystemExit(0)
job = json.loads(line)
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, fd)
    os.close(out)
if failed is not None:
    sys.stderr.write("the prewarmed locust could not import locust:\\n" + failed)
    raise SystemExit(1)
os.chdir(job["cwd"])
os.environ.clear()
os.environ.update(job["env"])
sys.argv = job["argv"]
if not os.environ.get("PYTHONSAFEPATH"):
    sys.path.insert(0, os.getcwd())  # as `python -m locust` run in the run's directory has it
locust.main.main()
"""


class _Spares:
    """At most one spare Locust process, started by :func:`prewarm` and taken by the next
    :meth:`LoadGenerator.start`. Thread-safe; a spare that died waiting is simply not used."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def prewarm(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
            try:
                self._proc = subprocess.Popen(
                    # -P: nothing of the harness's working directory is imported (the run's is, at hand-over).
                    [sys.executable, "-P", "-c", _SPARE_MAIN],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,  # its own process group, as a cold start has
                    close_fds=True,
                )
            except OSError:
                self._proc = None  # a cold start later says what is wrong, with locust's own words

    def drop(self) -> None:
        """End a spare nobody took (the session is over): its whole process group, then reap it."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_KILL_WAIT_S)

    def take(self) -> subprocess.Popen[bytes] | None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is not None:  # it died waiting: reaped, its pipe closed
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            return None
        return proc


_spares = _Spares()
atexit.register(_spares.drop)


def prewarm() -> None:
    """Start a Locust process ahead of the next :meth:`LoadGenerator.start`, which then only hands it its
    run: the runner calls this once an experiment's windows are over, so the import overlaps its rollback
    and the next experiment's set-up instead of delaying that experiment's baseline. Idempotent."""
    _spares.prewarm()


def drop_prewarmed() -> None:
    """End the spare :func:`prewarm` started if no generator took it (a session closing calls this)."""
    _spares.drop()


def _check_number(name: str, value: object, cap: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not 0 < value <= cap:
        raise ValueError(f"{name} must be in (0, {cap:g}], got {value!r}")


class Record(NamedTuple):
    """One request as seen by the load generator.

    ``t`` is the wall-clock (epoch) time the request was *started*, so windows are assigned by
    when the request was sent, not when it finished. ``status`` is 0 if no HTTP response arrived.
    ``trace`` / ``version`` are the ``x-harness-trace`` / ``x-harness-version`` response headers
    ('' when absent).
    """

    t: float
    latency_ms: float
    status: int
    version: str
    trace: str


@dataclass(frozen=True)
class LoadSummary:
    """Locust's own end-of-run totals next to the number of records we read.

    ``requests`` vs ``records`` is a consistency check of the record stream. ``failures`` counts
    network errors and 5xx (4xx are not failures: a 403/429 is often the policy under test).
    ``complete`` is False when locust died without printing its summary (crash or SIGKILL); the
    locust counters are then 0 and only ``records`` is meaningful.
    """

    requests: int
    failures: int
    rps: float | None
    records: int
    returncode: int | None = None
    complete: bool = True


def _target_url(host: str) -> str:
    """Normalise ``host`` to ``http(s)://127.0.0.1:PORT`` or refuse it with ValueError.

    Accepted: ``127.0.0.1:PORT``, ``localhost:PORT``, optionally with an ``http://``/``https://``
    scheme and a trailing '/'. ``localhost`` is pinned to 127.0.0.1 because name resolution could
    send it elsewhere (::1, or whatever /etc/hosts says).
    """
    if not isinstance(host, str) or not host.strip():
        raise ValueError(f"host must be a non-empty string, got {host!r}")
    raw = host.strip()
    parts = urlsplit(raw if "://" in raw else f"http://{raw}")
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"only http/https targets are supported, got {host!r}")
    if (parts.hostname or "").lower() not in _ALLOWED_HOSTS:
        raise ValueError(f"load may only target 127.0.0.1 (this machine), refusing {host!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"credentials in the target URL are not supported: {host!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"host must not carry a path or query (use LoadSpec.path): {host!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid port in {host!r}") from exc
    if port is None or port == 0:
        raise ValueError(f"host needs an explicit port, e.g. 127.0.0.1:8080, got {host!r}")
    return f"{parts.scheme}://127.0.0.1:{port}"


def _locust_leader(pid: int, recorded: Proc | None) -> psutil.Process | None:
    """A handle on ``pid`` if it is alive (not a zombie), runs locust, and leads its own process group.

    The group check matters because we kill the whole group: a recycled PID that happens to belong to
    some other locust process in someone else's group must not take its group down with it. When the
    PID file recorded the start (``recorded``), the process must have started then, too.
    """
    if pid <= 1:
        return None
    found = identify(pid)
    if found is None or (recorded is not None and not found[1].of(recorded)):
        return None
    handle = found[0]
    try:
        if handle.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return None
        cmdline = handle.cmdline()
        pgid = os.getpgid(pid)
    except (psutil.Error, ProcessLookupError):
        return None
    return handle if any("locust" in arg for arg in cmdline) and pgid == pid else None


def _wait_dead(handle: psutil.Process, timeout: float) -> bool:
    """Poll until the process is gone or a zombie (a zombie is dead; its parent just hasn't reaped it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            # A leader shows Z while its other threads are still exiting, and waitid() does not report it
            # until they are gone: dead means no process, or a zombie with no thread left but itself.
            gone = not handle.is_running() or (
                handle.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD) and handle.num_threads() <= 1)
        except psutil.Error:
            gone = True
        if gone:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)


_BOOT_ID = re.compile(f"{BOOT_ID_PATTERN}|-")
"""A boot id, or ``-`` where the system has none."""


def _read_pid_file(pid_file: Path) -> tuple[int, Proc | None] | None:
    """(PID, its recorded start or None) from ``locust.pid``; None if there is none; StateCorrupt if
    damaged.

    The file holds ``PID START BOOT BOOT_ID`` (psutil ``create_time``, the ``boot_time`` it was computed
    with and the boot's id, ``-`` where the system has none: see ``harness._process``); one written by an
    older version holds ``PID START`` or only the PID, and is still accepted.
    """
    remedy = (f"if a load generator of a crashed run may still be running, find it with `pgrep -af locust` "
              f"and stop it; then remove {pid_file}")
    try:
        text = pid_file.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise StateCorrupt(pid_file, "is a directory, not a PID file", remedy) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not ASCII"
        raise StateCorrupt(pid_file, f"cannot be read ({reason or exc})", remedy) from None
    fields = text.split()
    try:
        if len(fields) not in (1, 2, 4) or (len(fields) == 4 and not _BOOT_ID.fullmatch(fields[3])):
            raise ValueError
        pid = int(fields[0])
        times = [float(f) for f in fields[1:3]]
    except ValueError:
        raise StateCorrupt(pid_file, f"should hold 'PID START BOOT BOOT_ID', not {text[:60]!r}", remedy) from None
    if pid <= 1 or not all(math.isfinite(t) and t >= 0 for t in times):
        raise StateCorrupt(pid_file, f"holds no valid PID, start and boot time: {text.strip()[:60]!r}", remedy)
    if len(fields) == 1:
        return pid, None
    if len(fields) == 2:
        return pid, Proc("locust", pid, times[0], str(pid_file))
    return pid, Proc("locust", pid, times[0], str(pid_file), times[1], None if fields[3] == "-" else fields[3])


def kill_leftover(workdir: Path) -> bool:
    """Kill the locust process group recorded in ``workdir/locust.pid``, if it is still running.

    For crash cleanup: a harness that died without :meth:`LoadGenerator.stop` leaves locust
    loading the mesh until ``--run-time`` expires (unless its parent watchdog already stopped it).
    Returns True if something was killed. Idempotent; the PID file is removed once nothing is left.
    A damaged PID file is :class:`~harness._errors.StateCorrupt`: it is never guessed at.
    """
    pid_file = Path(workdir) / PID_FILE
    recorded = _read_pid_file(pid_file)
    if recorded is None:
        return False
    pid, start = recorded
    handle = _locust_leader(pid, start)
    if handle is None:
        pid_file.unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return False
    if not _wait_dead(handle, _KILL_WAIT_S):
        raise LoadError(f"locust process group {pid} survived SIGKILL for {_KILL_WAIT_S:g}s")
    pid_file.unlink(missing_ok=True)
    return True


# Lines of locust's stderr that never explain a failure: traceback headers and the stats tables.
_NOISE = re.compile(r"^(Traceback|Type\s|GET\s|-{3,}|Aggregated|Response time percentiles|Error report)")


def _stderr_tail(path: Path, lines: int = 6, max_chars: int = 800) -> str:
    """The last few informative stderr lines: no traceback frames, no stats tables.

    For an exception the final line (``SomeError: message``) is kept, which is what a human needs.
    """
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return "(no stderr)"
    kept = [ln.rstrip() for ln in text.splitlines() if ln.strip() and not ln[0].isspace()]
    kept = [ln[:240] for ln in kept if not _NOISE.match(ln)][-lines:]
    tail = " | ".join(kept)
    return (tail[-max_chars:] if len(tail) > max_chars else tail) or "(stderr empty)"


def _parse_summary(path: Path) -> tuple[int, int, float | None] | None:
    """Totals from locust's ``--json`` stdout: (requests, failures, rps), or None if absent.

    Locust prints a JSON list of per-endpoint entries (there is no aggregated entry). Parsing starts
    at the first '[' in case anything else was printed to stdout before it. In distributed mode every
    forked worker prints its own (empty: its stats went to the master) list first, and the master the
    whole run's: the list with the most requests is the summary.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    lists: list[list[object]] = []
    decoder = json.JSONDecoder()
    start = text.find("[")
    while start >= 0:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("[", start + 1)
            continue
        if isinstance(value, list):
            lists.append(value)
        start = text.find("[", end)
    if not lists:
        return None
    entries = max(lists, key=lambda found: sum(int(e.get("num_requests") or 0) for e in found if isinstance(e, dict)))
    requests = failures = 0
    first: float | None = None
    last: float | None = None
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        requests += int(entry.get("num_requests") or 0)
        failures += int(entry.get("num_failures") or 0)
        start_t, last_t = entry.get("start_time"), entry.get("last_request_timestamp")
        if isinstance(start_t, int | float):
            first = start_t if first is None else min(first, start_t)
        if isinstance(last_t, int | float):
            last = last_t if last is None else max(last, last_t)
    rps = requests / (last - first) if first is not None and last is not None and last > first else None
    return requests, failures, rps


class LoadGenerator:
    """Runs one locust load for one :class:`LoadSpec` against one local target.

    Single use: ``start()`` once, then ``read_new()`` as often as you like, then ``stop()``
    (also done by ``__exit__``). Not thread-safe; use it from the runner's thread.
    """

    def __init__(self, spec: LoadSpec, host: str, workdir: Path) -> None:
        self.spec = spec
        self.target = _target_url(host)
        self.workdir = Path(workdir)
        self.records_path = self.workdir / RECORDS_FILE
        self.stdout_path = self.workdir / STDOUT_FILE
        self.stderr_path = self.workdir / STDERR_FILE
        self.pid_path = self.workdir / PID_FILE
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: IO[bytes] | None = None
        self._partial = b""
        self._pending: list[Record] = []
        self._records = 0
        self.malformed = 0
        self._started_mono: float | None = None
        self.startup_s: float | None = None
        """Seconds from start() to the first record being read (locust import + first request)."""
        self.warm_start = False
        """True when a spare made by :func:`prewarm` took this run (its import was done ahead)."""
        self._summary: LoadSummary | None = None
        self._port: int | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The locust command line (exposed for logging and tests)."""
        s = self.spec
        return [
            sys.executable, "-m", "locust",
            "-f", str(LOCUSTFILE),
            "--headless",
            "-u", str(s.users),
            # All users in one batch; the locustfile staggers them by i/rate itself.
            "-r", str(s.users),
            # Locust ends by itself after this (counted from its test start, see the locustfile's
            # clock fix), so a harness that never calls stop() still can't load forever.
            "--run-time", f"{math.ceil(s.duration_s)}s",
            "--host", self.target,
            "--only-summary",
            "--json",
            "--stop-timeout", "1",
            "--loglevel", "WARNING",
            # 5xx are data here, not an error of the load generator: keep exit code 0 for them.
            "--exit-code-on-error", "0",
            # Locust's own distributed mode: it forks the workers (in its process group: one killpg ends
            # them all) and becomes their master, listening on 127.0.0.1 only, on a port of its own (not
            # Locust's fixed 5557). The forks read --master-host/--master-port, the master --master-bind-*.
            # Without local workers, a plain master for the remote ones. (The locustfile counts remote
            # workers into the master's expect_workers.)
            *((["--processes", str(s.workers), "--master-host", "127.0.0.1", "--master-port",
                str(self._master_port())] if s.workers else ["--master", "--expect-workers", str(s.remote_workers)])
              + ["--master-bind-host", "127.0.0.1", "--master-bind-port", str(self._master_port()),
                 "--expect-workers-max-wait", str(REMOTE_WAIT_S if s.remote_workers else LOCAL_WAIT_S)]
              if s.distributed else []),
        ]  # fmt: skip

    def remote_worker_script(self) -> str:
        """A shell script that runs one remote worker for every experiment of the run, one after another.

        Locust workers take the master's target, ``127.0.0.1:<gateway port>``, and the master listens on
        ``127.0.0.1:master_port``: where the worker runs, both must reach this machine's (the same pod's
        network namespace; or forwarded, e.g. ``ssh -R`` for each). Each experiment starts a new master on
        the same port and a worker ends with its master, so the script loops. Record times come from the
        worker's clock: keep it synchronised (NTP) with this machine's.
        """
        s = self.spec
        settings = {ENV_RATE: repr(float(s.rate)), ENV_USERS: str(s.users), ENV_PATH: s.path,
                    ENV_HEADERS: json.dumps(dict(s.headers)), ENV_TIMEOUT: repr(float(s.timeout_s)),
                    ENV_WORKERS: str(s.workers), ENV_REMOTE_WORKERS: str(s.remote_workers), ENV_REMOTE: "1",
                    ENV_RECORDS: os.devnull}
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(settings.items()))
        port = self._master_port()
        gateway = urlsplit(self.target).port
        return (
            "#!/bin/sh\n"
            "# Remote Locust worker(s) of a mesh-harness run; needs mesh-harness installed (PYTHON: its python).\n"
            f"# 127.0.0.1:{port} (the master) and 127.0.0.1:{gateway} (the gateway) must reach the harness's\n"
            f"# machine: the same pod, or e.g. ssh -R {port}:127.0.0.1:{port} -R {gateway}:127.0.0.1:{gateway} "
            "WORKER-HOST\n"
            "# Record times come from this machine's clock: keep it synchronised with the harness's (NTP).\n"
            'PY="${PYTHON:-python3}"\n'
            # Where the locustfile is, found without importing it (importing it starts a load generator).
            "LOCUSTFILE=$(\"$PY\" -c \"import importlib.util as u; "
            "print(u.find_spec('harness.traffic.locustfile').origin)\") || exit 1\n"
            "while :; do  # one master per experiment, on the same port: a worker ends with its master\n"
            f"  env {env} \"$PY\" -m locust -f \"$LOCUSTFILE\" --worker --master-host 127.0.0.1 "
            f"--master-port {port} --loglevel WARNING\n"
            "  sleep 1\n"
            "done\n")

    def _master_port(self) -> int:
        """The master's port: the spec's, or a free one on 127.0.0.1 chosen once per generator."""
        if self._port is None and self.spec.master_port:
            self._port = self.spec.master_port
        if self._port is None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self._port = int(probe.getsockname()[1])
        return self._port

    def _env(self) -> dict[str, str]:
        # LOCUST_* variables from the caller's environment would silently reconfigure the run
        # (e.g. LOCUST_PROCESSES, LOCUST_MODE_MASTER), so they are dropped.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
        s = self.spec
        env.update(
            {
                ENV_RATE: repr(float(s.rate)),
                ENV_USERS: str(s.users),
                ENV_PATH: s.path,
                ENV_HEADERS: json.dumps(dict(s.headers)),
                ENV_RECORDS: str(self.records_path),
                ENV_TIMEOUT: repr(float(s.timeout_s)),
                ENV_PARENT_PID: str(os.getpid()),
                ENV_WORKERS: str(s.workers),
                ENV_REMOTE_WORKERS: str(s.remote_workers),
            }
        )
        return env

    def start(self) -> None:
        """Spawn locust in its own session/process group and begin tailing its record stream."""
        if self._proc is not None or self._summary is not None:
            raise LoadError("LoadGenerator is single-use: start() was already called")
        self.workdir.mkdir(parents=True, exist_ok=True)
        # A locust left over by a crashed run in the same workdir would write into our records.
        kill_leftover(self.workdir)
        self.records_path.write_bytes(b"")
        self._reader = self.records_path.open("rb", buffering=0)
        spare = _spares.take()
        if spare is not None:
            self._proc = self._hand_over(spare)
        if self._proc is None:
            self._spawn()
        # The start time makes the record an identity: kill_leftover never kills a recycled PID.
        assert self._proc is not None
        start = start_of(self._proc.pid)  # None only if gone: an unreaped child cannot vanish
        started = "" if start is None else f" {start.created!r} {start.boot!r} {start.boot_id or '-'}"
        tmp = self.pid_path.with_suffix(".tmp")
        tmp.write_text(f"{self._proc.pid}{started}\n")
        tmp.replace(self.pid_path)

    def _hand_over(self, spare: subprocess.Popen[bytes]) -> subprocess.Popen[bytes] | None:
        """Give a spare Locust this run; None (and the spare gone) if it cannot take it."""
        argv = self.command()
        job = {"argv": ["locust", *argv[3:]], "env": self._env(), "cwd": str(self.workdir),
               "stdout": str(self.stdout_path), "stderr": str(self.stderr_path)}
        assert argv[1:3] == ["-m", "locust"]
        assert spare.stdin is not None
        # As a cold start does, before locust runs: stop() reads them whatever becomes of the spare.
        self.stdout_path.write_bytes(b"")
        self.stderr_path.write_bytes(b"")
        self._started_mono = time.monotonic()
        try:
            spare.stdin.write(json.dumps(job).encode() + b"\n")
            spare.stdin.close()
        except OSError:  # it died between take() and now
            with contextlib.suppress(OSError):
                spare.stdin.close()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(spare.pid, signal.SIGKILL)
            spare.wait()
            return None
        self.warm_start = True
        return spare

    def _spawn(self) -> None:
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self._started_mono = time.monotonic()
            self._proc = subprocess.Popen(
                self.command(),
                # stdin must not be a tty: locust would put the terminal in cbreak mode and treat
                # keystrokes as commands ('s' stops users).
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.workdir,  # keeps locust from reading ./locust.conf or ./pyproject.toml
                env=self._env(),
                start_new_session=True,
                close_fds=True,
            )

    @property
    def pid(self) -> int | None:
        """PID (and process group id) of the locust process, None before start()."""
        return None if self._proc is None else self._proc.pid

    def _exited(self) -> bool:
        """Has locust exited? Uses WNOWAIT so the PID stays reserved (zombie) until stop() reaps it,
        which keeps ``killpg`` on that PID safe from PID reuse."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        except ChildProcessError:
            return True
        return info is not None

    @property
    def running(self) -> bool:
        """True between start() and the moment locust exits (by stop() or by --run-time)."""
        return self._proc is not None and self._summary is None and not self._exited()

    def stderr_tail(self) -> str:
        """A short digest of locust's stderr, for error messages."""
        return _stderr_tail(self.stderr_path)

    # -- records ---------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Read whatever complete lines were appended since the last call into ``_pending``."""
        if self._reader is None:
            return
        data = self._reader.read()
        if not data:
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()  # b"" if data ended with a newline, else an incomplete line
        before = len(self._pending)
        for line in lines:
            fields = line.decode("utf-8", errors="replace").split("\t")
            try:
                rec = Record(float(fields[0]), float(fields[1]), int(fields[2]), fields[3], fields[4])
            except (ValueError, IndexError):
                self.malformed += 1
                continue
            self._pending.append(rec)
        added = len(self._pending) - before
        if self._records == 0 and added and self._started_mono is not None:
            self.startup_s = time.monotonic() - self._started_mono
        self._records += added

    def read_new(self) -> list[Record]:
        """Records appended since the previous call (in file order, roughly by completion time).

        Cheap enough to call every 50-100 ms. A line still being written is held back until it is
        complete.
        """
        self._pump()
        new, self._pending = self._pending, []
        return new

    def wait_ready(self, timeout: float = 15.0) -> float:
        """Block until the first record arrived; return seconds since start().

        Locust needs ~1 s just to import, so callers should wait for this before starting a
        baseline window. On failure the generator is stopped and LoadError (with stderr) raised.
        """
        if self._proc is None or self._started_mono is None:
            raise LoadError("wait_ready() before start()")
        deadline = time.monotonic() + timeout
        while True:
            self._pump()
            if self._records:
                return time.monotonic() - self._started_mono
            if self._exited():
                rc = self.stop().returncode
                raise LoadError(f"locust exited (rc={rc}) before sending a request: {self.stderr_tail()}")
            if time.monotonic() >= deadline:
                self.stop()
                raise LoadError(f"no request recorded within {timeout:g}s: {self.stderr_tail()}")
            time.sleep(_POLL_S)

    # -- stopping --------------------------------------------------------------------------------

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._exited():
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True

    def _killpg(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def stop(self, timeout: float = 5.0) -> LoadSummary:
        """Stop locust (SIGTERM, then SIGKILL after ``timeout``), drain records, return the summary.

        SIGTERM goes through locust's graceful shutdown, which flushes our record buffer and prints
        the --json summary. Idempotent: later calls return the same summary. Never leaves a process
        behind: the whole process group is SIGKILLed before the leader is reaped.
        """
        if self._summary is not None:
            return self._summary
        proc = self._proc
        if proc is None:
            self._summary = LoadSummary(0, 0, None, 0, None, complete=False)
            return self._summary
        if not self._exited():
            if self.spec.distributed:
                # The master alone: it tells its workers to stop, takes their last records, then exits.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
            else:
                self._killpg(signal.SIGTERM)
            if not self._wait_exit(timeout):
                self._killpg(signal.SIGKILL)
                self._wait_exit(_KILL_WAIT_S)
        # The leader is a zombie (or reaped) now; kill stragglers in its group while the PGID is
        # still reserved, then reap.
        self._killpg(signal.SIGKILL)
        try:
            proc.wait(timeout=_KILL_WAIT_S)
        except subprocess.TimeoutExpired as exc:
            raise LoadError(f"locust (pid {proc.pid}) did not die after SIGKILL") from exc
        self._pump()
        if self._partial:
            self.malformed += 1  # killed mid-write
            self._partial = b""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self.pid_path.unlink(missing_ok=True)
        parsed = _parse_summary(self.stdout_path)
        if parsed is None:
            self._summary = LoadSummary(0, 0, None, self._records, proc.returncode, complete=False)
        else:
            requests, failures, rps = parsed
            self._summary = LoadSummary(requests, failures, rps, self._records, proc.returncode, True)
        return self._summary

    def __enter__(self) -> Self:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LoadGenerator({self.spec!r}, target={self.target!r}, pid={self.pid}, running={self.running})"
