"""The baseline of ``bench.load_cost``: a bare Locust ``FastHttpUser`` that GETs ``/`` and records nothing.

Run only by Locust, in a subprocess started like the harness's own load (same command line, same
environment, see :class:`bench.load_cost.BareLoad`); never imported by the bench (importing locust
gevent-monkey-patches the interpreter). Its pacing is the harness user's, read from the same variables,
so the only differences left are what the harness adds per request: the response headers it reads, the
record it writes, the users' staggered start and the watchdog.
"""

from __future__ import annotations

import os

from locust import FastHttpUser, constant_throughput, task

RATE = float(os.environ.get("HARNESS_RATE") or 1.0)
USERS = max(1, int(float(os.environ.get("HARNESS_USERS") or 1)))


class BareUser(FastHttpUser):
    wait_time = constant_throughput(RATE / USERS)

    @task
    def get(self) -> None:
        self.client.get("/")
