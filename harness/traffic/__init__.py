"""Traffic generation for experiments.

Only the harness side lives in this namespace; ``harness.traffic.locustfile`` is executed by the
locust subprocess and must never be imported here (importing locust monkey-patches the process).
"""

from harness.traffic.load import (
    LoadError,
    LoadGenerator,
    LoadSpec,
    LoadSummary,
    Record,
    kill_leftover,
)

__all__ = ["LoadError", "LoadGenerator", "LoadSpec", "LoadSummary", "Record", "kill_leftover"]
