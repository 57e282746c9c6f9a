"""mesh-harness: chaos and traffic-policy experiments against a service mesh, with statistical verdicts.

The public API: load and check documents, drive the local mesh, run experiments, read verdicts.
Everything else (``harness.*`` submodules) is internal and may change.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from harness._errors import ConfigRejected, FaultError, HarnessError, InputError, MeshError, Problem
    from harness.assertions import Evidence, Outcome, WindowEvidence, evaluate
    from harness.gameday import plan_gameday, read_history, run_gameday
    from harness.mesh import open_driver
    from harness.mesh.base import Capabilities, CertificateView, MeshDriver, Prepared, Topology
    from harness.mesh.intents import (
        CertChange,
        HttpFault,
        NetworkToxic,
        Partition,
        PolicyOverride,
        ProcessSignal,
        SplitChange,
    )
    from harness.model.environment import Environment
    from harness.model.gameday import GameDay
    from harness.model.loader import Loaded, load_environment, load_gameday, load_suite
    from harness.model.schema import environment_schema, gameday_schema, suite_schema
    from harness.model.suite import Experiment, Suite
    from harness.runner.progress import Progress
    from harness.runner.results import ExperimentResult, SuiteResult
    from harness.runner.session import MeshSession, load_checked, run_suites

# Lazy (PEP 562): every demo service and the CLI import ``harness.*`` submodules, and loading the whole
# public API (pydantic models, httpx, ...) at each of their start-ups cost about half a second apiece.
_LAZY = {
    "ConfigRejected": "harness._errors",
    "Environment": "harness.model.environment",
    "Evidence": "harness.assertions",
    "Experiment": "harness.model.suite",
    "ExperimentResult": "harness.runner.results",
    "FaultError": "harness._errors",
    "GameDay": "harness.model.gameday",
    "HarnessError": "harness._errors",
    "InputError": "harness._errors",
    "Loaded": "harness.model.loader",
    "Capabilities": "harness.mesh.base",
    "CertChange": "harness.mesh.intents",
    "CertificateView": "harness.mesh.base",
    "HttpFault": "harness.mesh.intents",
    "MeshDriver": "harness.mesh.base",
    "NetworkToxic": "harness.mesh.intents",
    "Partition": "harness.mesh.intents",
    "PolicyOverride": "harness.mesh.intents",
    "Prepared": "harness.mesh.base",
    "ProcessSignal": "harness.mesh.intents",
    "SplitChange": "harness.mesh.intents",
    "Topology": "harness.mesh.base",
    "open_driver": "harness.mesh",
    "MeshError": "harness._errors",
    "MeshSession": "harness.runner.session",
    "Outcome": "harness.assertions",
    "Problem": "harness._errors",
    "Progress": "harness.runner.progress",
    "Suite": "harness.model.suite",
    "SuiteResult": "harness.runner.results",
    "WindowEvidence": "harness.assertions",
    "environment_schema": "harness.model.schema",
    "gameday_schema": "harness.model.schema",
    "load_gameday": "harness.model.loader",
    "plan_gameday": "harness.gameday",
    "read_history": "harness.gameday",
    "run_gameday": "harness.gameday",
    "evaluate": "harness.assertions",
    "load_checked": "harness.runner.session",
    "load_environment": "harness.model.loader",
    "load_suite": "harness.model.loader",
    "run_suites": "harness.runner.session",
    "suite_schema": "harness.model.schema",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "Capabilities",
    "CertChange",
    "CertificateView",
    "ConfigRejected",
    "Environment",
    "Evidence",
    "Experiment",
    "ExperimentResult",
    "FaultError",
    "GameDay",
    "HarnessError",
    "HttpFault",
    "InputError",
    "Loaded",
    "MeshDriver",
    "MeshError",
    "MeshSession",
    "NetworkToxic",
    "Outcome",
    "Partition",
    "PolicyOverride",
    "Prepared",
    "Problem",
    "ProcessSignal",
    "Progress",
    "SplitChange",
    "Suite",
    "SuiteResult",
    "Topology",
    "WindowEvidence",
    "__version__",
    "environment_schema",
    "evaluate",
    "gameday_schema",
    "load_checked",
    "load_environment",
    "load_gameday",
    "load_suite",
    "open_driver",
    "plan_gameday",
    "read_history",
    "run_gameday",
    "run_suites",
    "suite_schema",
]
